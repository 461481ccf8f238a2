package awstest

// The Amazon EKS DescribeNodegroup action, as the EKS API Reference
// (API Version 2017-11-01, "DescribeNodegroup") documents it: a REST-JSON
// request "GET /clusters/name/node-groups/nodegroupName" with no body, and a
// 200 reply {"nodegroup": {...}} with, among others, nodegroupName,
// clusterName, capacityType (ON_DEMAND | SPOT | CAPACITY_BLOCK), amiType,
// version, diskSize, labels (a string map), taints ({key, value, effect} with
// effect NO_SCHEDULE | NO_EXECUTE | PREFER_NO_SCHEDULE), tags and
// resources.autoScalingGroups. Its documented errors are ClientException
// (400), InvalidParameterException (400), ResourceNotFoundException (404:
// "The specified resource could not be found ... Amazon EKS clusters and node
// groups are Region-specific"), ServerException (500) and
// ServiceUnavailableException (503); AccessDeniedException (403) and
// ThrottlingException (400) are among the errors common to every AWS API.
//
// Faults are injected with Inject, Service "eks", Action "DescribeNodegroup"
// and Group the node group's name (EKSFault builds one).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// EKSService is the Service of EKS calls and faults.
	EKSService = "eks"
	// ActionDescribeNodegroup is the Action of DescribeNodegroup calls and faults.
	ActionDescribeNodegroup = "DescribeNodegroup"
)

// Nodegroup is an EKS managed node group as the emulator holds it. The
// emulator returns what it is given, malformed values included, so that
// tests can feed the client bad input.
type Nodegroup struct {
	Cluster, Name string
	// CapacityType is ON_DEMAND, SPOT or CAPACITY_BLOCK; AMIType e.g. AL2023_x86_64_STANDARD.
	CapacityType, AMIType, Version string
	DiskSize                       int32 // 0: not set
	Labels                         map[string]string
	Taints                         []NodegroupTaint
	Tags                           map[string]string
	// ASG is the Auto Scaling group EKS made for it (resources.autoScalingGroups).
	ASG string
}

// NodegroupTaint is a taint as EKS writes it: Effect NO_SCHEDULE,
// NO_EXECUTE or PREFER_NO_SCHEDULE. A nil Value is left out of the reply.
type NodegroupTaint struct {
	Key    string
	Value  *string
	Effect string
}

// EKSFault fails the next times DescribeNodegroup calls of the node group
// (all node groups when nodegroup is "") with code and status, e.g.
// AccessDeniedException/403, ThrottlingException/400,
// ResourceNotFoundException/404, ServerException/500.
func EKSFault(nodegroup, code string, status, times int) Fault {
	return Fault{Service: EKSService, Action: ActionDescribeNodegroup, Group: nodegroup, Code: code, Status: status, Times: times}
}

// AddNodegroup adds or replaces a managed node group.
func (s *Server) AddNodegroup(ng Nodegroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodegroups == nil {
		s.nodegroups = map[string]Nodegroup{}
	}
	s.nodegroups[ng.Cluster+"/"+ng.Name] = ng
}

// DeleteNodegroup removes a managed node group; DescribeNodegroup then
// answers ResourceNotFoundException.
func (s *Server) DeleteNodegroup(cluster, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodegroups, cluster+"/"+name)
}

// isEKS tells an EKS REST request from the query-protocol ones.
func isEKS(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/clusters/") }

type eksTaintJSON struct {
	Key    string  `json:"key,omitempty"`
	Value  *string `json:"value,omitempty"`
	Effect string  `json:"effect,omitempty"`
}

type eksNodegroupJSON struct {
	NodegroupName string            `json:"nodegroupName"`
	NodegroupArn  string            `json:"nodegroupArn"`
	ClusterName   string            `json:"clusterName"`
	Version       string            `json:"version,omitempty"`
	CapacityType  string            `json:"capacityType,omitempty"`
	AMIType       string            `json:"amiType,omitempty"`
	DiskSize      *int32            `json:"diskSize,omitempty"`
	Status        string            `json:"status"`
	CreatedAt     float64           `json:"createdAt"`
	Labels        map[string]string `json:"labels,omitempty"`
	Taints        []eksTaintJSON    `json:"taints,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	Resources     *struct {
		AutoScalingGroups []struct {
			Name string `json:"name"`
		} `json:"autoScalingGroups"`
	} `json:"resources,omitempty"`
}

// serveEKS answers an EKS request. Only DescribeNodegroup is modelled; any
// other path is a 404 as for an unknown resource.
func (s *Server) serveEKS(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("req-%d", time.Now().UnixNano())
	// /clusters/{name}/node-groups/{nodegroupName}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	var cluster, name string
	if len(parts) == 4 && parts[0] == "clusters" && parts[2] == "node-groups" {
		cluster, _ = url.PathUnescape(parts[1])
		name, _ = url.PathUnescape(parts[3])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Service: EKSService, Action: ActionDescribeNodegroup, Params: url.Values{"clusterName": {cluster}, "nodegroupName": {name}}}
	fail := func(e *apiError) {
		call.Code = e.code
		s.calls = append(s.calls, call)
		writeEKSError(w, reqID, e)
	}
	if r.Method != http.MethodGet || cluster == "" || name == "" {
		call.Action = r.Method + " " + r.URL.Path
		fail(&apiError{status: http.StatusNotFound, code: "ResourceNotFoundException", msg: "no such resource: " + r.URL.Path, senderFault: true})
		return
	}
	if f := s.fault(EKSService, ActionDescribeNodegroup, name); f != nil {
		fail(&apiError{status: f.Status, code: f.Code, msg: "injected fault", senderFault: f.Status < 500})
		return
	}
	ng, ok := s.nodegroups[cluster+"/"+name]
	if !ok {
		fail(&apiError{status: http.StatusNotFound, code: "ResourceNotFoundException",
			msg: fmt.Sprintf("No node group found for name: %s.", name), senderFault: true})
		return
	}
	out := eksNodegroupJSON{
		NodegroupName: ng.Name, ClusterName: ng.Cluster, Version: ng.Version, CapacityType: ng.CapacityType, AMIType: ng.AMIType,
		NodegroupArn: fmt.Sprintf("arn:aws:eks:us-east-1:123456789012:nodegroup/%s/%s/0a1b2c3d-0000-0000-0000-000000000000", ng.Cluster, ng.Name),
		Status:       "ACTIVE", CreatedAt: float64(s.clock.Now().Unix()), Labels: ng.Labels, Tags: ng.Tags,
	}
	if ng.DiskSize != 0 {
		d := ng.DiskSize
		out.DiskSize = &d
	}
	for _, t := range ng.Taints {
		out.Taints = append(out.Taints, eksTaintJSON{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	if ng.ASG != "" {
		out.Resources = &struct {
			AutoScalingGroups []struct {
				Name string `json:"name"`
			} `json:"autoScalingGroups"`
		}{AutoScalingGroups: []struct {
			Name string `json:"name"`
		}{{Name: ng.ASG}}}
	}
	body, err := json.Marshal(map[string]any{"nodegroup": out})
	if err != nil {
		fail(&apiError{status: http.StatusInternalServerError, code: "ServerException", msg: err.Error()})
		return
	}
	s.calls = append(s.calls, call)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("X-Amzn-Requestid", reqID)
	_, _ = w.Write(body)
}

// writeEKSError writes a REST-JSON error: the code in the X-Amzn-Errortype
// header and in the body's __type, with a message.
func writeEKSError(w http.ResponseWriter, reqID string, e *apiError) {
	body, _ := json.Marshal(map[string]string{"__type": e.code, "message": e.msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", e.code)
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}
