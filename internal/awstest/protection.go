package awstest

import (
	"encoding/xml"
	"net/url"
	"slices"
)

// AMI deregistration protection, as the EC2 API reference documents it:
// API_EnableImageDeregistrationProtection, "Enables deregistration
// protection for an AMI. When deregistration protection is enabled, the AMI
// can't be deregistered." (DeregisterImage, the test's Server.DeregisterImage,
// then fails); API_DisableImageDeregistrationProtection lifts it. Both take
// ImageId (required) and answer <return>. An AMI EC2 does not know fails with
// InvalidAMIID.NotFound. Every emulated AMI is owned by Account, which
// DescribeImages answers as imageOwnerId (and Owner.N=self selects).

// Account is the emulated AWS account that owns the emulated AMIs.
const Account = "000000000000"

type xmlImage struct {
	ImageID                  string `xml:"imageId"`
	State                    string `xml:"imageState"`
	OwnerID                  string `xml:"imageOwnerId"`
	DeregistrationProtection string `xml:"deregistrationProtection"`
}

type imageProtectionResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Return    string `xml:"return"`
}

func init() {
	ec2Actions["EnableImageDeregistrationProtection"] = func(s *Server, form url.Values, root xml.Name, reqID string) (any, error) {
		return s.imageProtection(form, root, reqID, true)
	}
	ec2Actions["DisableImageDeregistrationProtection"] = func(s *Server, form url.Values, root xml.Name, reqID string) (any, error) {
		return s.imageProtection(form, root, reqID, false)
	}
}

func (s *Server) imageProtection(form url.Values, root xml.Name, reqID string, on bool) (any, error) {
	id := form.Get("ImageId")
	if id == "" {
		return nil, &apiError{status: 400, code: "MissingParameter", msg: "The request must contain the parameter ImageId", senderFault: true}
	}
	im := s.images[id]
	if im == nil || im.state != imageAvailable {
		return nil, &apiError{status: 400, code: "InvalidAMIID.NotFound", msg: "The image id '[" + id + "]' does not exist", senderFault: true}
	}
	im.protected = on
	return &imageProtectionResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID, Return: "true"}, nil
}

// ImageProtected reports whether the AMI id has deregistration protection.
func (s *Server) ImageProtected(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[id]
	return im != nil && im.protected
}

// ownersMatch applies DescribeImages' Owner.N: every emulated AMI is Account's.
func ownersMatch(form url.Values) bool {
	owners := list(form, "Owner")
	return len(owners) == 0 || slices.Contains(owners, "self") || slices.Contains(owners, Account)
}
