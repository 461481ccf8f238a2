package awstest

import (
	"encoding/xml"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// What the emulator models of AMIs, from the Amazon EC2 API reference and the
// Amazon EC2 Auto Scaling User Guide:
//
//   - Every instance records the AMI it was launched from (DescribeInstances
//     answers it as imageId). A group's instances come from its launch
//     template's AMI, "ami-<group name>" unless GroupSpec.ImageID says otherwise.
//   - DeregisterImage (the test's Server.DeregisterImage) leaves the running
//     instances alone. DescribeImages: "Recently deregistered images appear in
//     the returned results for a short interval and then return empty
//     results." The emulator answers a deregistered AMI with state
//     deregistered for ForgetAfter, then no longer at all.
//   - AttachInstances refuses an instance whose AMI is gone: the user guide
//     (ec2-auto-scaling-detach-attach-instances, considerations for attaching
//     instances) lists "The AMI used to launch the instance must still exist."

type image struct {
	state          string // available, deregistered
	deregisteredAt time.Time
	protected      bool // deregistration protection (protection.go)
}

const (
	imageAvailable    = "available"
	imageDeregistered = "deregistered"
)

func init() {
	ec2Actions["DescribeImages"] = (*Server).describeImages
}

// launchImage is the AMI that group g launches from, registered on first use.
func (s *Server) launchImage(g *group) string {
	id := s.templates[g.LaunchTemplateID].ImageID
	if id == "" {
		id = g.ImageID
	}
	if id == "" {
		id = "ami-" + g.Name
		if lt, ok := s.templates[g.LaunchTemplateID]; ok && lt.Name != "" {
			id = "ami-" + lt.Name
		}
	}
	if s.images == nil {
		s.images = map[string]*image{}
	}
	if s.images[id] == nil {
		s.images[id] = &image{state: imageAvailable}
	}
	return id
}

// DeregisterImage deregisters an AMI; the instances launched from it keep
// running. An AMI with deregistration protection is not deregistered
// (API_EnableImageDeregistrationProtection: "When deregistration protection
// is enabled, the AMI can't be deregistered."): the error says so.
func (s *Server) DeregisterImage(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[id]
	if im != nil && im.protected {
		return &apiError{status: 400, code: "InvalidParameterValue", msg: "the AMI " + id + " has deregistration protection enabled", senderFault: true}
	}
	if im != nil && im.state == imageAvailable {
		im.state, im.deregisteredAt = imageDeregistered, s.clock.Now()
	}
	return nil
}

// imageGone reports whether the AMI id no longer exists.
func (s *Server) imageGone(id string) bool {
	im := s.images[id]
	return im == nil || im.state != imageAvailable
}

type describeImagesResponse struct {
	XMLName   xml.Name
	Xmlns     string     `xml:"xmlns,attr"`
	RequestID string     `xml:"requestId"`
	Images    []xmlImage `xml:"imagesSet>item"`
}

// describeImages answers ImageId.N or Filter.N.Name=image-id. An id given
// as ImageId that EC2 never knew fails the call (InvalidAMIID.NotFound); a
// filter matches what it matches.
func (s *Server) describeImages(form url.Values, root xml.Name, reqID string) (any, error) {
	out := &describeImagesResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID}
	ids := list(form, "ImageId")
	for n := 1; ; n++ {
		p := "Filter." + strconv.Itoa(n)
		name, ok := form[p+".Name"]
		if !ok {
			break
		}
		if name[0] != "image-id" {
			return nil, &apiError{status: 400, code: "InvalidParameterValue", msg: "the emulator filters images by image-id only", senderFault: true}
		}
		ids = append(ids, list(form, p+".Value")...)
	}
	for _, id := range list(form, "ImageId") {
		if s.images[id] == nil {
			return nil, &apiError{status: 400, code: "InvalidAMIID.NotFound", msg: "The image id '[" + id + "]' does not exist", senderFault: true}
		}
	}
	if !ownersMatch(form) {
		ids = nil
	}
	slices.Sort(ids)
	now := s.clock.Now()
	for _, id := range slices.Compact(ids) {
		im := s.images[id]
		if im == nil || (im.state == imageDeregistered && !now.Before(im.deregisteredAt.Add(s.forgetAfter()))) {
			continue
		}
		prot := "disabled"
		if im.protected {
			prot = "enabled-without-cooldown"
		}
		out.Images = append(out.Images, xmlImage{ImageID: id, State: im.state, OwnerID: Account, DeregistrationProtection: prot})
	}
	return out, nil
}

// DefaultForgetAfter is how long EC2 still describes a terminated instance
// or a deregistered AMI: TerminateInstances, "Terminated instances remain
// visible after termination (for approximately one hour)."
const DefaultForgetAfter = time.Hour

// ForgetAfter sets how long terminated instances and deregistered AMIs stay
// visible in DescribeInstances and DescribeImages (DefaultForgetAfter).
func (s *Server) ForgetAfter(d time.Duration) {
	if d <= 0 {
		panic("awstest: ForgetAfter must be positive")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget = d
}

func (s *Server) forgetAfter() time.Duration {
	if s.forget <= 0 {
		return DefaultForgetAfter
	}
	return s.forget
}

// forgotten reports whether EC2 no longer describes instance i.
func (s *Server) forgotten(i *Instance) bool {
	return i.EC2State == "terminated" && !s.clock.Now().Before(i.terminatedAt.Add(s.forgetAfter()))
}
