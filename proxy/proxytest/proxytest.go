// Package proxytest runs hawser's front end on 127.0.0.1 for the tests and
// benchmarks of other packages.
package proxytest

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/proxy"
)

// Serve starts a front end with an empty route table on a free port of
// 127.0.0.1 until the test ends, and returns it with its route owners and
// its address.
func Serve(tb testing.TB) (*proxy.Proxy, *proxy.Routes, string) {
	tb.Helper()
	p, err := proxy.New(proxy.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ServeListeners(ctx, ln, nil) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("front end: %v", err)
		}
	})
	return p, proxy.NewRoutes(p), ln.Addr().String()
}
