package registry

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPlainHTTPOnlyForLoopbackAndListedRegistries(t *testing.T) {
	p := plainHTTP{listed: []string{"registry.lan:5000", "mirror.lan"}}
	for host, want := range map[string]bool{
		"127.0.0.1:5000":       true,
		"127.8.9.10":           true,
		"localhost:5000":       true,
		"localhost":            true,
		"reg.localhost:5000":   true,
		"[::1]:5000":           true,
		"::1":                  true,
		"registry.lan:5000":    true,
		"REGISTRY.LAN:5000":    true,
		"registry.lan:5001":    false,
		"registry.lan":         false,
		"mirror.lan:443":       true,
		"mirror.lan":           true,
		"10.0.0.5:5000":        false, // go-containerregistry alone would allow RFC 1918
		"192.168.1.2":          false,
		"index.docker.io":      false,
		"localhost.evil.com":   false,
		"127.0.0.1.nip.io:443": false,
	} {
		if got := p.allowed(host); got != want {
			t.Errorf("%s: want plain HTTP allowed=%v, got %v", host, want, got)
		}
	}
}

// failingTransport fails the test when a request gets through.
type failingTransport struct{ t *testing.T }

func (f failingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.t.Errorf("request to %s should have been refused before it was sent", req.URL)
	return nil, io.EOF
}

func TestGuardRefusesPlainHTTPBeforeSending(t *testing.T) {
	guard := httpGuard{policy: plainHTTP{}, inner: failingTransport{t}}
	for _, url := range []string{"http://10.0.0.5:5000/v2/", "http://registry.example.com/token?scope=x"} {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := guard.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "HAWSER_INSECURE_REGISTRIES") {
			t.Errorf("%s: want a refusal that says how to allow it, got %v", url, err)
		}
	}
}

func TestParseInsecure(t *testing.T) {
	hosts, err := ParseInsecure(" registry.lan:5000, Mirror.lan ,,")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(hosts, ",") != "registry.lan:5000,mirror.lan" {
		t.Fatalf("got %v", hosts)
	}
	for _, bad := range []string{"http://registry.lan", "registry.lan/path", "bad host"} {
		if _, err := ParseInsecure(bad); err == nil || !strings.Contains(err.Error(), "HAWSER_INSECURE_REGISTRIES") {
			t.Errorf("%q: want an error naming the key, got %v", bad, err)
		}
	}
}

func TestTLSRegistryCertificateIsVerified(t *testing.T) {
	srv := httptest.NewTLSServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	img := randomImage(t)
	ref := host + "/app:stable"
	if err := remote.Write(mustParse(t, ref), img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	chk := Check{Ref: ref, LocalRepoDigests: []string{host + "/app@" + digestOf(t, img).String()}}

	untrusting := newTestChecker(t, Options{})
	_, err := untrusting.Check(context.Background(), chk)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate from an unknown authority must be refused, got %v", err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	trusting := newTestChecker(t, Options{RootCAs: pool})
	if res, err := trusting.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("with its CA trusted: want up to date over TLS, got %+v, %v", res, err)
	}
}
