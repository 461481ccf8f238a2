package awstest

import (
	"net/http"
	"net/http/httptest"

	"github.com/ballast-k8s/ballast/internal/asg"
)

// InProcessClientOptions are ClientOptions whose HTTP client hands each
// request to the emulator's handler in this process instead of over loopback.
// Everything else is the same path: the real SDK clients serialize, sign,
// retry and paginate, and the same handler decodes and answers from the same
// model, faults and call log. Only the sockets are skipped, which is what the
// unit tests of internal/balancer use; the SDK's own tests (internal/asg,
// this package) and the integration tests keep the loopback listener.
func (s *Server) InProcessClientOptions() asg.Options {
	o := s.ClientOptions()
	o.HTTPClient = &http.Client{Transport: inProcess{s}}
	return o
}

// inProcess is an http.RoundTripper that serves requests with Server.serve.
type inProcess struct{ s *Server }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		defer r.Body.Close()
	}
	// A cancelled or expired context fails the call before AWS sees it, as
	// on the loopback transport.
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	t.s.serve(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
