package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TransientError says a registry could not be asked right now: it is
// unreachable, timed out or failed with a server error. It says nothing
// about the image; the check is worth repeating on a later tick, and the
// running containers should be left as they are.
type TransientError struct {
	// Registry is the host[:port] that failed.
	Registry string
	// Err is the underlying failure.
	Err error
}

// Error implements error.
func (e *TransientError) Error() string {
	return fmt.Sprintf("registry %s unavailable: %v", e.Registry, e.Err)
}

// Unwrap returns the underlying failure.
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err, from Check, is worth retrying later
// without any change: the registry was unavailable or rate limited.
func IsTransient(err error) bool {
	var te *TransientError
	var re *RateLimitedError
	return errors.As(err, &te) || errors.As(err, &re)
}

// isUnavailable tells failures of the registry (network, timeouts, 5xx) from
// answers about the request (401, 404, bad TLS, a refused plain-HTTP URL).
func isUnavailable(err error) bool {
	var re *RateLimitedError
	if errors.As(err, &re) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= http.StatusInternalServerError || terr.StatusCode == http.StatusRequestTimeout
	}
	var opErr *net.OpError
	var netErr net.Error
	return errors.As(err, &opErr) ||
		errors.As(err, &netErr) && netErr.Timeout() ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// isAuthFailure reports a rejection of the credentials (or their absence).
func isAuthFailure(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) &&
		(terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden)
}
