package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// pebble is Let's Encrypt's test ACME server, run in-process. Its validation
// authority really fetches HTTP-01 tokens and dials TLS-ALPN-01 on the given
// ports of 127.0.0.1, where a test DNS server sends every name.
type pebble struct {
	directory string
	// apiRoots trusts pebble's own HTTPS endpoint.
	apiRoots *x509.CertPool
	// issuedRoots trusts the certificates pebble issues.
	issuedRoots *x509.CertPool
	orders      atomic.Int64
}

func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	// Validate at once instead of after a random pause of up to 15 s, and
	// do not reject nonces at random (both defaults exercise clients).
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(t.Output(), "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	frontEnd := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	pb := &pebble{issuedRoots: x509.NewCertPool(), apiRoots: x509.NewCertPool()}
	api := frontEnd.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			pb.orders.Add(1)
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	pb.directory = srv.URL + wfe.DirectoryPath
	pb.apiRoots.AddCert(srv.Certificate())
	pb.issuedRoots.AddCert(authority.GetRootCert(0).Cert)
	return pb
}

// startDNS answers every A query with 127.0.0.1 (and nothing else), over
// TCP as pebble's validation authority asks.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// running is a proxy serving HTTP and HTTPS on 127.0.0.1 until the test
// (or stop) ends it.
type running struct {
	p                 *Proxy
	httpAddr, tlsAddr string
	stop              func()
}

func serveTLS(t *testing.T, pb *pebble, storage string, httpLn, tlsLn net.Listener, routes ...Route) *running {
	t.Helper()
	p := newProxy(t, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), TLS: &TLSOptions{
		CA: pb.directory, Email: "ops@hawser.test", StorageDir: storage, TrustedRoots: pb.apiRoots,
		IssuanceBurst: 1, IssuanceInterval: time.Hour,
	}}, routes...)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.ServeListeners(ctx, httpLn, tlsLn) }()
	r := &running{p: p, httpAddr: httpLn.Addr().String(), tlsAddr: tlsLn.Addr().String()}
	var once atomic.Bool
	r.stop = func() {
		if once.Swap(true) {
			return
		}
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// handshake completes a TLS handshake for serverName, trusting roots only.
func handshake(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func TestACMECertificatesOnlyForRoutedHostsAndServedFromStorageAfterRestart(t *testing.T) {
	httpLn, tlsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	pb := startPebble(t, port(httpLn), port(tlsLn))
	storage := t.TempDir()
	app := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Header.Get("X-Forwarded-Proto"))
	})
	routes := []Route{
		{Host: "app.hawser.test", Service: "app", Upstreams: []string{app}},
		{Host: "api.hawser.test", Service: "api", Upstreams: []string{app}},
	}
	first := serveTLS(t, pb, storage, httpLn, tlsLn, routes...)

	cert, err := handshake(first.tlsAddr, "app.hawser.test", pb.issuedRoots)
	if err != nil {
		t.Fatalf("handshake for a routed host: %v", err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "app.hawser.test" {
		t.Fatalf("certificate names %v, want app.hawser.test", cert.DNSNames)
	}
	if n := pb.orders.Load(); n != 1 {
		t.Fatalf("ACME orders after the first certificate: %d, want 1", n)
	}

	t.Run("HTTPS over HTTP/2 reaches the upstream", func(t *testing.T) {
		client := httpsClient(first.tlsAddr, pb.issuedRoots)
		resp, body := request(t, client, "https://app.hawser.test", http.MethodGet, "app.hawser.test", nil)
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || body != "HTTP/1.1 https" {
			t.Fatalf("got %d over %s, upstream saw %q; want 200 over HTTP/2, upstream on HTTP/1.1 told https", resp.StatusCode, resp.Proto, body)
		}
	})
	t.Run("plain HTTP redirects a routed host to HTTPS", func(t *testing.T) {
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, _ := request(t, client, "http://"+first.httpAddr, http.MethodGet, "app.hawser.test", nil)
		want := "https://app.hawser.test:" + strconv.Itoa(port(tlsLn)) + "/path?q=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Fatalf("got %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		if resp, _ := get(t, "http://"+first.httpAddr, "unknown.hawser.test"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown host over HTTP: got %d, want 404", resp.StatusCode)
		}
	})
	t.Run("no certificate for a host not in the table", func(t *testing.T) {
		for _, name := range []string{"evil.hawser.test", "127.0.0.1", ""} {
			if _, err := handshake(first.tlsAddr, name, pb.issuedRoots); err == nil {
				t.Errorf("handshake for %q succeeded", name)
			}
		}
		if n := pb.orders.Load(); n != 1 {
			t.Fatalf("ACME orders: %d, want still 1", n)
		}
	})
	t.Run("issuance beyond the rate limit is refused", func(t *testing.T) {
		if _, err := handshake(first.tlsAddr, "api.hawser.test", pb.issuedRoots); err == nil {
			t.Fatal("a second certificate within the limit of one per hour was issued")
		}
		if n := pb.orders.Load(); n != 1 {
			t.Fatalf("ACME orders: %d, want still 1", n)
		}
	})

	first.stop()
	second := serveTLS(t, pb, storage, listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0"), routes...)
	cert2, err := handshake(second.tlsAddr, "app.hawser.test", pb.issuedRoots)
	if err != nil {
		t.Fatalf("handshake after a restart: %v", err)
	}
	if !cert2.Equal(cert) {
		t.Fatal("after a restart a different certificate is served")
	}
	if n := pb.orders.Load(); n != 1 {
		t.Fatalf("ACME orders after the restart: %d, want still 1 (served from storage)", n)
	}
}

// httpsClient sends every request to addr, verifying certificates against
// roots: the test's stand-in for DNS.
func httpsClient(addr string, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: 20 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
}

func TestACMEAnswersTLSALPNChallengeWhenHTTPChallengeCannotPass(t *testing.T) {
	httpLn, tlsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	// The validation authority looks for HTTP-01 tokens where nothing
	// listens, so only TLS-ALPN-01 on the HTTPS listener can pass.
	dead := listen(t, "127.0.0.1:0")
	deadPort := port(dead)
	dead.Close()
	pb := startPebble(t, deadPort, port(tlsLn))
	r := serveTLS(t, pb, t.TempDir(), httpLn, tlsLn, Route{Host: "alpn.hawser.test", Service: "app", Upstreams: []string{says(t, "app")}})
	cert, err := handshake(r.tlsAddr, "alpn.hawser.test", pb.issuedRoots)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "alpn.hawser.test" {
		t.Fatalf("certificate names %v, want alpn.hawser.test", cert.DNSNames)
	}
}

func TestOnDemandHostsCannotUseUpTheRoutedHostsCertificates(t *testing.T) {
	p := newProxy(t, Options{}, Route{Host: "app.hawser.test", Service: "app", Upstreams: []string{deadUpstream(t)}})
	obtain := p.limitIssuance(rate.NewLimiter(rate.Every(time.Hour), 1), rate.NewLimiter(rate.Every(time.Hour), 2))
	ask := func(host string) error {
		return obtain(context.Background(), "cert_obtaining", map[string]any{"identifier": host, "renewal": false})
	}
	for i, host := range []string{"c-0123456789ab.hawser.test", "c-0123456789ac.hawser.test"} {
		if err := ask(host); err != nil {
			t.Fatalf("on-demand certificate %d within its budget: %v", i, err)
		}
	}
	if err := ask("c-0123456789ad.hawser.test"); err == nil {
		t.Fatal("an on-demand certificate beyond its budget")
	}
	if err := ask("app.hawser.test"); err != nil {
		t.Fatalf("the routed host found its budget used up by on-demand hosts: %v", err)
	}
}
