// Command frontprof serves hawser's front end (package proxy, set up as
// `hawser serve` sets it up) in front of one upstream and writes a CPU
// profile of it, for bench/frontend.sh to find where the proxy's time goes.
// With -bare it serves net/http/httputil's ReverseProxy alone instead, with
// the same transport settings: the floor any Go proxy built on it pays;
// -bare -pool adds a ReverseProxy.BufferPool, to measure what reusing the
// copy buffers would save.
//
// It prints the address it listens on, then serves until SIGTERM or
// SIGINT and writes the profiles (-memprofile: every allocation since the
// start, sampled).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/proxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "frontprof:", err)
		os.Exit(1)
	}
}

func run() error {
	upstream := flag.String("upstream", "", "upstream, as http://127.0.0.1:<port>")
	host := flag.String("host", "echo.localhost", "host name routed to the upstream")
	profile := flag.String("cpuprofile", "", "file to write the CPU profile to")
	memprofile := flag.String("memprofile", "", "file to write the allocation profile to")
	bare := flag.Bool("bare", false, "serve httputil.ReverseProxy alone instead of hawser's proxy")
	pool := flag.Bool("pool", false, "with -bare: reuse the response copy buffers")
	flag.Parse()
	if *upstream == "" {
		return errors.New("need -upstream")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer writeAllocs(*memprofile)
	}
	if *bare {
		return serveBare(ctx, ln, *upstream, *pool)
	}
	return serveHawser(ctx, ln, *upstream, *host)
}

func writeAllocs(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "frontprof:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "frontprof:", err)
	}
}

// serveHawser runs the proxy as cmd/hawser's newFrontEnd builds it: an
// info-level logger and a metrics registry.
func serveHawser(ctx context.Context, ln net.Listener, upstream, host string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := proxy.New(proxy.Options{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	t, err := proxy.NewTable([]proxy.Route{{Host: host, Service: "echo", Upstreams: []string{upstream}}})
	if err != nil {
		return err
	}
	p.Swap(t)
	return p.ServeListeners(ctx, ln, nil)
}

// serveBare runs httputil.ReverseProxy with the transport and server
// settings of package proxy, and nothing else: no route lookup, metrics,
// status recording or body limit.
func serveBare(ctx context.Context, ln net.Listener, upstream string, pool bool) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: proxy.DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: proxy.DefaultUpstreamTimeout,
			ExpectContinueTimeout: time.Second,
		},
	}
	if pool {
		rp.BufferPool = &bufferPool{}
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: proxy.DefaultReadHeaderTimeout, IdleTimeout: proxy.DefaultIdleTimeout}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), proxy.DefaultShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// bufferPool lends ReverseProxy the 32 KiB buffers it copies response bodies
// through; without one it allocates a buffer per response.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
