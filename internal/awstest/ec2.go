package awstest

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"slices"
	"strconv"
)

type xmlEC2Instance struct {
	InstanceID   string `xml:"instanceId"`
	InstanceType string `xml:"instanceType"`
	ImageID      string `xml:"imageId"`
	Placement    struct {
		AvailabilityZone string `xml:"availabilityZone"`
	} `xml:"placement"`
	InstanceState struct {
		Code int32  `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
}

type xmlReservation struct {
	ReservationID string           `xml:"reservationId"`
	Instances     []xmlEC2Instance `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	XMLName      xml.Name
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type xmlInstanceType struct {
	InstanceType  string   `xml:"instanceType"`
	VCPU          int32    `xml:"vCpuInfo>defaultVCpus"`
	MemoryMiB     int64    `xml:"memoryInfo>sizeInMiB"`
	Architectures []string `xml:"processorInfo>supportedArchitectures>item"`
	GPUs          []struct {
		Name         string `xml:"name"`
		Manufacturer string `xml:"manufacturer"`
		Count        int32  `xml:"count"`
	} `xml:"gpuInfo>gpus>item,omitempty"`
	InstanceStorageSupported bool `xml:"instanceStorageSupported"`
}

type describeInstanceTypesResponse struct {
	XMLName       xml.Name
	Xmlns         string            `xml:"xmlns,attr"`
	RequestID     string            `xml:"requestId"`
	InstanceTypes []xmlInstanceType `xml:"instanceTypeSet>item"`
}

type describeLaunchTemplateVersionsResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Versions  []struct {
		LaunchTemplateID   string `xml:"launchTemplateId"`
		LaunchTemplateName string `xml:"launchTemplateName"`
		VersionNumber      int64  `xml:"versionNumber"`
		DefaultVersion     bool   `xml:"defaultVersion"`
		InstanceType       string `xml:"launchTemplateData>instanceType,omitempty"`
	} `xml:"launchTemplateVersionSet>item"`
}

var ec2StateCodes = map[string]int32{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func (s *Server) ec2(action string, form url.Values) (any, error) {
	root := xml.Name{Local: action + "Response"}
	reqID := fmt.Sprintf("ec2-%d", len(s.calls)+1)
	switch action {
	case "DescribeInstances":
		return s.describeInstances(form, &describeInstancesResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID})
	case "DescribeInstanceTypes":
		out := &describeInstanceTypesResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID}
		var missing []string
		for _, n := range list(form, "InstanceType") {
			t, ok := s.types[n]
			if !ok {
				missing = append(missing, n)
				continue
			}
			x := xmlInstanceType{InstanceType: t.Name, VCPU: t.VCPU, MemoryMiB: t.MemoryMiB, Architectures: []string{t.Architecture}, InstanceStorageSupported: t.LocalNVMeDisk}
			if t.NvidiaGPUs > 0 {
				x.GPUs = append(x.GPUs, struct {
					Name         string `xml:"name"`
					Manufacturer string `xml:"manufacturer"`
					Count        int32  `xml:"count"`
				}{"V100", "NVIDIA", t.NvidiaGPUs})
			}
			out.InstanceTypes = append(out.InstanceTypes, x)
		}
		if len(missing) > 0 {
			return nil, &apiError{status: 400, code: "InvalidInstanceType", msg: fmt.Sprintf("The following supplied instance types do not exist: %v", missing), senderFault: true}
		}
		return out, nil
	case "DescribeLaunchTemplateVersions":
		out := &describeLaunchTemplateVersionsResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID}
		var lt *LaunchTemplate
		for _, t := range s.templates {
			if t.ID == form.Get("LaunchTemplateId") || (t.Name != "" && t.Name == form.Get("LaunchTemplateName")) {
				lt = &t
				break
			}
		}
		if lt == nil {
			return nil, &apiError{status: 400, code: "InvalidLaunchTemplateId.NotFound", msg: "launch template not found", senderFault: true}
		}
		for _, v := range list(form, "LaunchTemplateVersion") { // templates have one version, 1 (desired_test.go)
			if v != "$Latest" && v != "$Default" && v != "1" {
				return nil, &apiError{status: 400, code: "InvalidLaunchTemplateId.VersionNotFound", senderFault: true,
					msg: fmt.Sprintf("Could not find launch template version %s for launch template %s", v, lt.ID)}
			}
		}
		out.Versions = append(out.Versions, struct {
			LaunchTemplateID   string `xml:"launchTemplateId"`
			LaunchTemplateName string `xml:"launchTemplateName"`
			VersionNumber      int64  `xml:"versionNumber"`
			DefaultVersion     bool   `xml:"defaultVersion"`
			InstanceType       string `xml:"launchTemplateData>instanceType,omitempty"`
		}{lt.ID, lt.Name, 1, true, lt.InstanceType})
		return out, nil
	}
	if h := ec2Actions[action]; h != nil { // registered by other files of the package
		return h(s, form, root, reqID)
	}
	return nil, &apiError{status: 400, code: "InvalidAction", msg: "the emulator does not implement " + action, senderFault: true}
}

func (s *Server) describeInstances(form url.Values, out *describeInstancesResponse) (any, error) {
	ids := list(form, "InstanceId")
	filtered := false
	for n := 1; ; n++ {
		p := "Filter." + strconv.Itoa(n)
		name, ok := form[p+".Name"]
		if !ok {
			break
		}
		if name[0] != "instance-id" {
			return nil, &apiError{status: 400, code: "InvalidParameterValue", msg: "the emulator filters by instance-id only", senderFault: true}
		}
		filtered = true
		ids = append(ids, list(form, p+".Value")...)
	}
	if len(ids) > 0 && form.Get("MaxResults") != "" && !filtered {
		return nil, &apiError{status: 400, code: "InvalidParameterCombination", msg: "The parameter instancesSet cannot be used with the parameter maxResults", senderFault: true}
	}
	var found []*Instance
	for _, id := range ids {
		i, ok := s.instances[id]
		if ok && s.forgotten(i) {
			ok = false
		}
		if !ok {
			if !filtered {
				return nil, &apiError{status: 400, code: "InvalidInstanceID.NotFound", msg: fmt.Sprintf("The instance ID '%s' does not exist", id), senderFault: true}
			}
			continue
		}
		found = append(found, i)
	}
	if len(ids) == 0 && !filtered {
		for _, i := range s.instances {
			if !s.forgotten(i) {
				found = append(found, i)
			}
		}
	}
	slices.SortFunc(found, func(a, b *Instance) int { return a.seq - b.seq })
	max, err := intParam(form, "MaxResults", 1000)
	if err != nil {
		return nil, err
	}
	if max < 5 || max > 1000 {
		return nil, &apiError{status: 400, code: "InvalidParameterValue", msg: "MaxResults must be between 5 and 1000", senderFault: true}
	}
	found, out.NextToken, err = page(found, form.Get("NextToken"), max)
	if err != nil {
		return nil, err
	}
	for _, i := range found {
		x := xmlEC2Instance{InstanceID: i.ID, InstanceType: i.InstanceType, ImageID: i.ImageID}
		x.Placement.AvailabilityZone = i.Zone
		x.InstanceState.Name, x.InstanceState.Code = i.EC2State, ec2StateCodes[i.EC2State]
		out.Reservations = append(out.Reservations, xmlReservation{ReservationID: "r-" + i.ID[2:], Instances: []xmlEC2Instance{x}})
	}
	return out, nil
}
