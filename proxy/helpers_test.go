package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newProxy makes a proxy whose table holds routes.
func newProxy(t *testing.T, opts Options, routes ...Route) *Proxy {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	swap(t, p, routes...)
	return p
}

func swap(t testing.TB, p *Proxy, routes ...Route) {
	t.Helper()
	tbl, err := NewTable(routes)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	p.Swap(tbl)
}

// frontEnd serves p's handler on 127.0.0.1.
func frontEnd(t *testing.T, p *Proxy) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// upstream is an app on 127.0.0.1 answering with h; it returns its URL.
func upstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// says is an upstream that answers with its name.
func says(t *testing.T, name string) string {
	return upstream(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
}

// deadUpstream is an address on 127.0.0.1 where nothing listens.
func deadUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// request sends a request for host to the front end.
func request(t testing.TB, c *http.Client, front, method, host string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, front+"/path?q=1", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, front, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

func get(t testing.TB, front, host string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return request(t, http.DefaultClient, front, http.MethodGet, host, nil, hdr...)
}

// hostPort is the host:port of a URL like http://127.0.0.1:1234.
func hostPort(rawURL string) string {
	return strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://")
}

// eventually polls cond for up to 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
