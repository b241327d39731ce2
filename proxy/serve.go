package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
)

// Serve listens on Options.HTTPAddr (and HTTPSAddr with TLS) and serves
// until ctx ends, then shuts down gracefully within ShutdownTimeout.
func (p *Proxy) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	httpLn, err := lc.Listen(ctx, "tcp", p.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("front end: listen on %s: %w", p.opts.HTTPAddr, err)
	}
	var httpsLn net.Listener
	if p.opts.TLS != nil {
		httpsLn, err = lc.Listen(ctx, "tcp", p.opts.HTTPSAddr)
		if err != nil {
			httpLn.Close()
			return fmt.Errorf("front end: listen on %s: %w", p.opts.HTTPSAddr, err)
		}
	}
	return p.ServeListeners(ctx, httpLn, httpsLn)
}

// ServeListeners is Serve on listeners the caller opened: httpsLn must be
// set exactly when Options.TLS is. It closes both.
func (p *Proxy) ServeListeners(ctx context.Context, httpLn, httpsLn net.Listener) error {
	if (p.opts.TLS != nil) != (httpsLn != nil) {
		httpLn.Close()
		if httpsLn != nil {
			httpsLn.Close()
		}
		return errors.New("front end: an HTTPS listener is needed exactly when TLS is configured")
	}
	listeners, certs := p.listeners(httpLn, httpsLn)
	defer p.transport.CloseIdleConnections()
	if certs != nil {
		// Renewal maintenance runs only while serving.
		defer certs.cache.Stop()
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- l.serve() }()
		p.log.Info("front end listening", "addr", l.ln.Addr().String(), "tls", l.tls)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	return errors.Join(err, p.shutdown(ctx, listeners))
}

// listener is one server on one listener.
type listener struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

func (l listener) serve() error {
	var err error
	if l.tls {
		err = l.srv.ServeTLS(l.ln, "", "")
	} else {
		err = l.srv.Serve(l.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("front end on %s: %w", l.ln.Addr(), err)
}

// listeners builds the servers: plain HTTP serves the routes directly, or,
// with TLS, answers HTTP-01 challenges and redirects to HTTPS.
func (p *Proxy) listeners(httpLn, httpsLn net.Listener) ([]listener, *certManager) {
	if httpsLn == nil {
		return []listener{{srv: p.newServer(p.Handler()), ln: httpLn}}, nil
	}
	certs := p.newCertManager(httpLn.Addr(), httpsLn.Addr())
	toHTTPS := redirectToHTTPS(httpsLn.Addr())
	plain := certs.issuer.HTTPChallengeHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, toHTTPS)
	}))
	secure := p.newServer(p.Handler())
	secure.TLSConfig = certs.tlsConfig()
	return []listener{{srv: p.newServer(plain), ln: httpLn}, {srv: secure, ln: httpsLn, tls: true}}, certs
}

// newServer bounds what a client may hold: headers must arrive within
// ReadHeaderTimeout and idle connections close after IdleTimeout. There is
// no read or write timeout, which would cut uploads, event streams and
// WebSockets; MaxBodyBytes bounds bodies instead.
func (p *Proxy) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: p.opts.ReadHeaderTimeout,
		IdleTimeout:       p.opts.IdleTimeout,
		// TLS handshake refusals (hosts not routed, scanners) are routine.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// shutdown stops accepting, lets requests in flight finish within
// ShutdownTimeout, then closes what is left. WebSockets, hijacked from the
// server, are closed by the end of their upstream or client.
func (p *Proxy) shutdown(ctx context.Context, listeners []listener) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, l := range listeners {
		if err := l.srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("front end on %s: shutdown: %w", l.ln.Addr(), err), l.srv.Close())
		}
	}
	return errors.Join(errs...)
}

// redirectToHTTPS sends a request to the same URL over HTTPS, on the port
// the HTTPS listener uses (none in the URL for 443).
func redirectToHTTPS(httpsAddr net.Addr) http.HandlerFunc {
	suffix := ""
	if _, port := splitAddr(httpsAddr); port != 443 {
		suffix = ":" + strconv.Itoa(port)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		target := "https://" + canonicalHost(r.Host) + suffix + r.URL.RequestURI()
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
	}
}
