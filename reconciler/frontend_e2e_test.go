package reconciler_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/proxy/proxytest"
	"hawser.dev/hawser/reconciler/store"
)

// frontEnd serves a real proxy on 127.0.0.1 for the harness and returns
// its address.
func frontEnd(tb testing.TB) (*proxy.Routes, string) {
	tb.Helper()
	_, routes, addr := proxytest.Serve(tb)
	return routes, addr
}

// routed is one web service behind the front end; version is what it
// serves, and serve=false makes a version that never answers.
func routed(extra string, serve bool) map[string]string {
	cmd := `["sh", "-c", "echo $$VERSION > /www/index.html; exec httpd -f -p 8080 -h /www"]`
	if !serve {
		cmd = `["sh", "-c", "echo never serving; exec sleep 3600"]`
	}
	return map[string]string{"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ` + cmd + `
    labels:
      dev.hawser.http.port: "8080"
    environment:
      VERSION: ${VERSION:-v0}
` + extra + `
    tmpfs: [/www]
`}
}

// load sends requests through the front end until stop is closed and
// counts the failures; the body of the last answer is kept.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	last       string
	errors     []string
}

func (l *load) run(t *testing.T, addr, host string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail(fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))))
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				l.last = strings.TrimSpace(string(body))
				l.mu.Unlock()
			}
		}()
	}
	return &wg
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) < 5 {
		l.errors = append(l.errors, msg)
	}
}

func (l *load) served() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func TestBlueGreenUpdatesUnderLoadLoseNoRequest(t *testing.T) {
	var addr string
	h := newHarnessWith(t, routed("", true), func(h *harness) { h.front, addr = frontEnd(t) })
	h.mustReconcile()
	host := h.project + ".localhost"
	stop := make(chan struct{})
	var l load
	wg := l.run(t, addr, host, stop)
	for i := 1; i <= 5; i++ {
		h.env["VERSION"] = fmt.Sprintf("v%d", i)
		before := h.ids()["web"]
		h.mustReconcile()
		if h.ids()["web"] == before {
			t.Fatalf("update %d did not recreate web", i)
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during five updates: %v", n, n+l.ok.Load(), l.errors)
	}
	if l.ok.Load() < 50 || l.served() != "v5" {
		t.Fatalf("%d requests served, last answer %q", l.ok.Load(), l.served())
	}
	if names := h.containerNames(); len(names) != 1 || names[0] != h.project+"-web-1" {
		t.Fatalf("containers after the updates: %v", names)
	}
}

func TestUnhealthyUpdateIsRolledBackAndBlueGreenLosesNoRequest(t *testing.T) {
	for name, extra := range map[string]string{
		"blue-green": "",
		"recreate":   "    container_name: CONTAINER",
	} {
		t.Run(name, func(t *testing.T) {
			var addr string
			h := newHarnessWith(t, nil, func(h *harness) {
				h.front, addr = frontEnd(t)
				h.healthTimeout = 4 * time.Second
				h.repo.Commit("first", routed(strings.Replace(extra, "CONTAINER", h.project+"-fixed", 1), true))
			})
			h.mustReconcile()
			before := h.ids()["web"]
			stop := make(chan struct{})
			var l load
			wg := l.run(t, addr, h.project+".localhost", stop)
			bad := h.repo.Commit("never healthy", routed(strings.Replace(extra, "CONTAINER", h.project+"-fixed", 1), false))
			err := h.reconcile()
			time.Sleep(500 * time.Millisecond)
			close(stop)
			wg.Wait()
			if err == nil {
				t.Fatal("an update that never becomes healthy deployed")
			}
			d := h.lastDeployment()
			if d.Result != store.ResultRolledBack || d.Commit != bad || !strings.Contains(d.Logs, "never serving") {
				t.Fatalf("deployment = %+v", d)
			}
			if h.ids()["web"] != before || l.served() != "v0" {
				t.Fatalf("old version not serving: container %s (was %s), last answer %q", h.ids()["web"], before, l.served())
			}
			if n := l.failed.Load(); name == "blue-green" && n != 0 {
				t.Fatalf("%d of %d requests failed: %v", n, n+l.ok.Load(), l.errors)
			}
			t.Logf("%s: %d requests served, %d failed", name, l.ok.Load(), l.failed.Load())
		})
	}
}

func (h *harness) containerNames() []string {
	var names []string
	for _, c := range h.containers() {
		names = append(names, strings.TrimPrefix(c.Names[0], "/"))
	}
	return names
}
