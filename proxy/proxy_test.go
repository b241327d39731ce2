package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/websocket"
)

func TestRoutesByHostIgnoringPortAndCase(t *testing.T) {
	p := newProxy(t, Options{},
		Route{Host: "app.localhost", Service: "app", Upstreams: []string{says(t, "app")}},
		Route{Host: "api.localhost", Service: "api", Upstreams: []string{says(t, "api")}},
	)
	front := frontEnd(t, p).URL
	for host, want := range map[string]string{
		"app.localhost":      "app",
		"APP.Localhost:8080": "app",
		"api.localhost.":     "api",
		"api.localhost:80":   "api",
	} {
		resp, body := get(t, front, host)
		if resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("Host %q: got %d %q, want 200 %q", host, resp.StatusCode, body, want)
		}
	}
	if resp, _ := get(t, front, "other.localhost"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unrouted host: got %d, want 404", resp.StatusCode)
	}
}

func TestNewTableRejectsInvalidRoutes(t *testing.T) {
	ok := "http://127.0.0.1:8000"
	for _, tc := range []struct {
		name  string
		route Route
		want  string
	}{
		{"uppercase host", Route{Host: "App.localhost", Service: "s", Upstreams: []string{ok}}, "lowercase"},
		{"host with port", Route{Host: "app.localhost:80", Service: "s", Upstreams: []string{ok}}, "character ':'"},
		{"empty label", Route{Host: "app..localhost", Service: "s", Upstreams: []string{ok}}, "1 to 63"},
		{"label with hyphen at end", Route{Host: "app-.localhost", Service: "s", Upstreams: []string{ok}}, "starts or ends"},
		{"wildcard", Route{Host: "*.localhost", Service: "s", Upstreams: []string{ok}}, "character '*'"},
		{"no service", Route{Host: "app.localhost", Upstreams: []string{ok}}, "service"},
		{"no upstream", Route{Host: "app.localhost", Service: "s"}, "no upstream"},
		{"https upstream", Route{Host: "app.localhost", Service: "s", Upstreams: []string{"https://127.0.0.1:8000"}}, "want http://"},
		{"upstream with path", Route{Host: "app.localhost", Service: "s", Upstreams: []string{"http://127.0.0.1:8000/app"}}, "want http://"},
		{"upstream without port", Route{Host: "app.localhost", Service: "s", Upstreams: []string{"http://127.0.0.1"}}, "port"},
		{"upstream on a private address", Route{Host: "app.localhost", Service: "s", Upstreams: []string{"http://172.17.0.2:80"}}, "not an IP address"},
		{"upstream with bad name", Route{Host: "app.localhost", Service: "s", Upstreams: []string{"http://web_1:80"}}, "character '_'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTable([]Route{tc.route})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("duplicate host", func(t *testing.T) {
		r := Route{Host: "app.localhost", Service: "s", Upstreams: []string{ok}}
		if _, err := NewTable([]Route{r, r}); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("got %v, want a duplicate-host error", err)
		}
	})
	t.Run("valid names", func(t *testing.T) {
		_, err := NewTable([]Route{
			{Host: "localhost", Service: "s", Upstreams: []string{"http://[::1]:80", "http://web:8080/"}},
			{Host: "a-1.b.example.com", Service: "s", Unavailable: "down for maintenance"},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestSwapUnderLoadFailsNoRequest(t *testing.T) {
	a, b := says(t, "a"), says(t, "b")
	// The load loop sends Host 127.0.0.1, the front end's address.
	p := newProxy(t, Options{}, Route{Host: "127.0.0.1", Service: "app", Upstreams: []string{a}})
	front := frontEnd(t, p).URL
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	var stop atomic.Bool
	var failed, fromA, fromB atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				resp, err := client.Get(front + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != http.StatusOK:
					failed.Add(1)
				case string(body) == "a":
					fromA.Add(1)
				case string(body) == "b":
					fromB.Add(1)
				}
			}
		})
	}
	for i := range 100 {
		up := a
		if i%2 == 0 {
			up = b
		}
		swap(t, p, Route{Host: "127.0.0.1", Service: "app", Upstreams: []string{up}})
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 || fromA.Load() == 0 || fromB.Load() == 0 {
		t.Fatalf("failed %d, from a %d, from b %d: want no failure and answers from both", failed.Load(), fromA.Load(), fromB.Load())
	}
}

func TestInFlightRequestFinishesOnOldTableAfterSwap(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	old := upstream(t, func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "old")
	})
	p := newProxy(t, Options{}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{old}})
	front := frontEnd(t, p).URL

	done := make(chan string, 1)
	go func() {
		_, body := get(t, front, "app.localhost")
		done <- body
	}()
	<-started
	swap(t, p, Route{Host: "app.localhost", Service: "app", Upstreams: []string{says(t, "new")}})

	if _, body := get(t, front, "app.localhost"); body != "new" {
		t.Fatalf("request after the swap: got %q, want new", body)
	}
	if n := p.InFlight(old + "/"); n != 1 {
		t.Fatalf("InFlight(old) = %d, want 1", n)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Drain(short, old); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a request in flight: got %v, want deadline exceeded", err)
	}
	close(release)
	if body := <-done; body != "old" {
		t.Fatalf("in-flight request: got %q, want old", body)
	}
	if err := p.Drain(context.Background(), old); err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

func TestWebSocketEchoesThroughProxy(t *testing.T) {
	up := upstream(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }).ServeHTTP)
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Registerer: reg}, Route{Host: "ws.localhost", Service: "ws", Upstreams: []string{up}})
	front := frontEnd(t, p)

	conn, err := net.Dial("tcp", hostPort(front.URL))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig("ws://ws.localhost/echo", "http://ws.localhost/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	for _, msg := range []string{"hello", "again"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
		}
	}
	if n := p.InFlight(up); n != 1 {
		t.Errorf("InFlight with an open WebSocket = %d, want 1", n)
	}
	ws.Close()
	eventually(t, "the closed WebSocket is no longer in flight", func() bool { return p.InFlight(up) == 0 })
	if got := testutil.ToFloat64(p.metrics.requests.WithLabelValues("ws.localhost", "1xx")); got != 1 {
		t.Errorf("requests{host=ws.localhost,code=1xx} = %v, want 1", got)
	}
}

func TestServerSentEventArrivesBeforeStreamEnds(t *testing.T) {
	finish := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-finish:
		case <-r.Context().Done():
		}
	})
	defer close(finish)
	p := newProxy(t, Options{}, Route{Host: "sse.localhost", Service: "sse", Upstreams: []string{up}})
	front := frontEnd(t, p).URL

	// The stream stays open until the test ends: the event must arrive
	// within the deadline, or the request fails.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front+"/events", nil)
	req.Host = "sse.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no response while the stream was open: %v", err)
	}
	defer resp.Body.Close()
	l, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || l != "data: first\n" {
		t.Fatalf("first line: got %q, %v; want the event while the stream is open", l, err)
	}
}

func TestForwardedHeadersDescribeClient(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"host":  r.Host,
			"for":   r.Header.Get("X-Forwarded-For"),
			"proto": r.Header.Get("X-Forwarded-Proto"),
			"fhost": r.Header.Get("X-Forwarded-Host"),
			"uri":   r.RequestURI,
		})
	})
	p := newProxy(t, Options{}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{up}})
	front := frontEnd(t, p).URL

	_, body := get(t, front, "app.localhost:8080", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example")
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	want := map[string]string{"host": "app.localhost:8080", "for": "127.0.0.1", "proto": "http", "fhost": "app.localhost:8080", "uri": "/path?q=1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestErrorPagesForBrowsersAndOthers(t *testing.T) {
	slow := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	dead := deadUpstream(t)
	p := newProxy(t, Options{UpstreamTimeout: 100 * time.Millisecond},
		Route{Host: "down.localhost", Service: "down", Upstreams: []string{dead}},
		Route{Host: "slow.localhost", Service: "slow", Upstreams: []string{slow}},
		Route{Host: "deploying.localhost", Service: "deploying", Unavailable: "A new version is starting.", RetryAfter: 30 * time.Second},
	)
	front := frontEnd(t, p).URL
	for _, tc := range []struct {
		host       string
		code       int
		retryAfter string
	}{
		{"nowhere.localhost", http.StatusNotFound, ""},
		{"down.localhost", http.StatusBadGateway, ""},
		{"deploying.localhost", http.StatusServiceUnavailable, "30"},
		{"slow.localhost", http.StatusGatewayTimeout, ""},
	} {
		for _, accept := range []string{"text/html,application/xhtml+xml,*/*;q=0.8", "*/*"} {
			resp, body := get(t, front, tc.host, "Accept", accept)
			html := strings.HasPrefix(accept, "text/html")
			ct := resp.Header.Get("Content-Type")
			switch {
			case resp.StatusCode != tc.code:
				t.Errorf("%s: got %d, want %d", tc.host, resp.StatusCode, tc.code)
			case resp.Header.Get("Retry-After") != tc.retryAfter:
				t.Errorf("%s: Retry-After %q, want %q", tc.host, resp.Header.Get("Retry-After"), tc.retryAfter)
			case html && (!strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "<html")):
				t.Errorf("%s for a browser: got %s %q", tc.host, ct, body)
			case !html && (!strings.HasPrefix(ct, "text/plain") || strings.Count(body, "\n") != 1 || !strings.HasPrefix(body, strconv.Itoa(tc.code)+" ")):
				t.Errorf("%s for curl: got %s %q", tc.host, ct, body)
			case strings.Contains(body, "127.0.0.1") || strings.Contains(body, hostPort(dead)) || strings.Contains(body, hostPort(slow)):
				t.Errorf("%s: the page leaks an upstream address: %q", tc.host, body)
			}
		}
	}
	if _, body := get(t, front, "deploying.localhost"); !strings.Contains(body, "A new version is starting.") {
		t.Errorf("503 page lacks the reason: %q", body)
	}
}

func TestBodyOverLimitIsRejected(t *testing.T) {
	var reached atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		io.WriteString(w, strconv.Itoa(len(b)))
	})
	p := newProxy(t, Options{MaxBodyBytes: 1000}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{up}})
	front := frontEnd(t, p).URL

	resp, _ := request(t, http.DefaultClient, front, http.MethodPost, "app.localhost", strings.NewReader(strings.Repeat("x", 2000)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || reached.Load() != 0 {
		t.Fatalf("declared length over the limit: got %d, upstream reached %d times; want 413 before the upstream", resp.StatusCode, reached.Load())
	}
	// Without Content-Length (chunked), the limit is found while streaming.
	resp, _ = request(t, http.DefaultClient, front, http.MethodPost, "app.localhost", io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed body over the limit: got %d, want 413", resp.StatusCode)
	}
	resp, body := request(t, http.DefaultClient, front, http.MethodPost, "app.localhost", io.MultiReader(strings.NewReader(strings.Repeat("x", 999))))
	if resp.StatusCode != http.StatusOK || body != "999" {
		t.Fatalf("body under the limit: got %d %q, want 200 999", resp.StatusCode, body)
	}
}

func TestRequestsGoRoundRobinOverReplicas(t *testing.T) {
	p := newProxy(t, Options{}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{says(t, "1"), says(t, "2")}})
	front := frontEnd(t, p).URL
	var got []string
	for range 4 {
		_, body := get(t, front, "app.localhost")
		got = append(got, body)
	}
	if strings.Join(got, "") != "1212" {
		t.Fatalf("replicas answered %v, want 1 2 1 2", got)
	}
}

func TestReplicaThatRefusesIsPassedOver(t *testing.T) {
	p := newProxy(t, Options{}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{deadUpstream(t), says(t, "live")}})
	front := frontEnd(t, p).URL
	if resp, _ := get(t, front, "app.localhost"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("first request, to the dead replica: got %d, want 502", resp.StatusCode)
	}
	for i := range 5 {
		if resp, body := get(t, front, "app.localhost"); resp.StatusCode != http.StatusOK || body != "live" {
			t.Fatalf("request %d after the refusal: got %d %q, want the live replica", i, resp.StatusCode, body)
		}
	}
}

func TestRouteHandlerServesInsteadOfProxy(t *testing.T) {
	waking := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "starting") })
	p := newProxy(t, Options{}, Route{Host: "pr-1.localhost", Service: "app", Upstreams: []string{deadUpstream(t)}, Handler: waking})
	if resp, body := get(t, frontEnd(t, p).URL, "pr-1.localhost"); resp.StatusCode != http.StatusOK || body != "starting" {
		t.Fatalf("got %d %q, want the route's handler", resp.StatusCode, body)
	}
}

func TestOnDemandAnswersOnlyHostsWithoutARoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Registerer: reg}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{says(t, "routed")}})
	front := frontEnd(t, p).URL
	if resp, _ := get(t, front, "c-0123456789ab.localhost"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without OnDemand an unknown host answers %d", resp.StatusCode)
	}
	line, _ := htpasswdLine(t, "2y")
	auth, err := ParseBasicAuth(line)
	if err != nil {
		t.Fatal(err)
	}
	var touched, asked atomic.Int32
	p.SetOnDemand(func(_ context.Context, host string) *Route {
		asked.Add(1)
		switch host {
		case "c-0123456789ab.localhost", "app.localhost":
			return &Route{Host: host, Service: "preview", Auth: auth, Touch: func() { touched.Add(1) },
				Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "building") })}
		case "forward.localhost": // a route that would forward is never taken
			return &Route{Host: host, Service: "x", Upstreams: []string{says(t, "smuggled")}}
		}
		return nil
	})
	if resp, _ := get(t, front, "c-0123456789ab.localhost"); resp.StatusCode != http.StatusUnauthorized || touched.Load() != 0 {
		t.Fatalf("without credentials: %d, touched %d times", resp.StatusCode, touched.Load())
	}
	if resp, body := get(t, front, "C-0123456789AB.localhost:8080", "Authorization", basic(authUser, authPassword)); resp.StatusCode != http.StatusOK || body != "building" || touched.Load() != 1 {
		t.Fatalf("with credentials: %d %q, touched %d times", resp.StatusCode, body, touched.Load())
	}
	for _, host := range []string{"forward.localhost", "other.localhost"} {
		if resp, _ := get(t, front, host); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s answers %d, want 404", host, resp.StatusCode)
		}
	}
	before := asked.Load()
	if _, body := get(t, front, "app.localhost"); body != "routed" || asked.Load() != before {
		t.Errorf("a routed host answered %q and asked OnDemand %d times", body, asked.Load()-before)
	}
	if labels := hostLabels(t, reg); strings.Contains(labels, "c-0123456789ab") {
		t.Errorf("an on-demand host has metric series of its own: %s", labels)
	}
	if err := p.allowCertificate(context.Background(), "c-0123456789ab.localhost"); err != nil {
		t.Errorf("no certificate for an on-demand host: %v", err)
	}
	if err := p.allowCertificate(context.Background(), "other.localhost"); err == nil {
		t.Error("a certificate for a host nobody serves")
	}
}

func TestMetricsLabelOnlyRoutedHosts(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newProxy(t, Options{Registerer: reg}, Route{Host: "app.localhost", Service: "app", Upstreams: []string{says(t, "app")}})
	front := frontEnd(t, p).URL
	get(t, front, "app.localhost")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		get(t, front, h)
	}
	if got := hostLabels(t, reg); got != "app.localhost unknown" {
		t.Fatalf("host labels %q, want app.localhost and unknown", got)
	}
	if got := testutil.ToFloat64(p.metrics.requests.WithLabelValues("unknown", "4xx")); got != 3 {
		t.Errorf("requests{host=unknown,code=4xx} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(p.metrics.swaps); got != 1 {
		t.Errorf("swaps = %v, want 1", got)
	}
	p.ForgetHost("app.localhost")
	if got := hostLabels(t, reg); got != "unknown" {
		t.Fatalf("after ForgetHost: host labels %q, want unknown only", got)
	}
}

// hostLabels lists the host label values of the request series, sorted.
func hostLabels(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "hawser_proxy_requests_total" && f.GetName() != "hawser_proxy_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "host" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	var hosts []string
	for h := range seen {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return strings.Join(hosts, " ")
}

func TestServeFinishesRequestsInFlightOnShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	p := newProxy(t, Options{}, Route{Host: "127.0.0.1", Service: "app", Upstreams: []string{up}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.ServeListeners(ctx, ln, nil) }()

	front := "http://" + ln.Addr().String()
	done := make(chan string, 1)
	go func() {
		_, body := get(t, front, "127.0.0.1")
		done <- body
	}()
	<-started
	cancel()
	eventually(t, "the listener is closed", func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if body := <-done; body != "done" {
		t.Fatalf("request in flight at shutdown: got %q, want done", body)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
