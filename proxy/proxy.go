// Package proxy is hawser's front end: a reverse proxy in front of the
// deployed services whose route table (host → upstreams) is built whole,
// validated and swapped atomically, with TLS certificates from ACME
// (certmagic) for the routed hosts only.
//
// A request keeps the table and the upstream it started with, however many
// swaps happen meanwhile; InFlight and Drain tell when an old upstream is
// idle and may be stopped.
package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultHTTPAddr          = "127.0.0.1:8080"
	DefaultHTTPSAddr         = ":443"
	DefaultMaxBodyBytes      = 100 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultDialTimeout       = 5 * time.Second
	DefaultUpstreamTimeout   = time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
	defaultRetryAfter        = 5 * time.Second
)

// Options configure a Proxy. Zero values take the defaults above.
type Options struct {
	// Logger receives the proxy's and certmagic's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the proxy's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// HTTPAddr is where plain HTTP is served (with TLS: ACME HTTP-01
	// challenges and redirects to HTTPS).
	HTTPAddr string
	// HTTPSAddr is where HTTPS is served; used only when TLS is set.
	HTTPSAddr string
	// TLS, when set, turns on HTTPS with certificates from ACME. Without it
	// only plain HTTP is served.
	TLS *TLSOptions
	// MaxBodyBytes limits request bodies (413 beyond); negative means no
	// limit.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds how long a client may take to send headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections from clients.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting to an upstream (502 beyond).
	DialTimeout time.Duration
	// UpstreamTimeout bounds the wait for an upstream's response headers
	// (504 beyond); bodies and WebSockets may stream for as long as they like.
	UpstreamTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when Serve's ctx ends;
	// connections still open then are closed.
	ShutdownTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.HTTPAddr = cmp.Or(o.HTTPAddr, DefaultHTTPAddr)
	o.HTTPSAddr = cmp.Or(o.HTTPSAddr, DefaultHTTPSAddr)
	o.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, DefaultMaxBodyBytes)
	o.ReadHeaderTimeout = cmp.Or(o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, DefaultIdleTimeout)
	o.DialTimeout = cmp.Or(o.DialTimeout, DefaultDialTimeout)
	o.UpstreamTimeout = cmp.Or(o.UpstreamTimeout, DefaultUpstreamTimeout)
	o.ShutdownTimeout = cmp.Or(o.ShutdownTimeout, DefaultShutdownTimeout)
	return o
}

// Proxy is the front end. Create it with New, install routes with Swap,
// run it with Serve.
type Proxy struct {
	opts      Options
	log       *slog.Logger
	metrics   *metrics
	current   atomic.Pointer[installed]
	backends  backends
	transport *http.Transport
	rp        *httputil.ReverseProxy
	onDemand  atomic.Pointer[OnDemand]
}

// OnDemand answers hosts that have no route yet but may get one when asked
// for, such as per-commit previews: a route that may only serve (Handler or
// Unavailable, never Upstreams), or nil for a host it does not know. It is
// also asked before a certificate is obtained for such a host, so it must
// refuse cheaply what it cannot serve.
type OnDemand func(ctx context.Context, host string) *Route

// SetOnDemand installs the answer for hosts the table does not have.
func (p *Proxy) SetOnDemand(f OnDemand) {
	p.onDemand.Store(&f)
}

// demand asks the OnDemand function about host: a route that serves
// without forwarding, or nil.
func (p *Proxy) demand(ctx context.Context, host string) *route {
	f := p.onDemand.Load()
	if f == nil {
		return nil
	}
	rt := (*f)(ctx, host)
	if rt == nil || (rt.Handler == nil && rt.Unavailable == "") {
		return nil
	}
	return &route{Route: *rt}
}

// installed wraps a table for one Swap, so that swapping the same table in
// twice still counts as a change for requests racing the swap.
type installed struct{ table *Table }

// New creates a proxy with an empty route table: every host is unknown
// until the first Swap.
func New(opts Options) (*Proxy, error) {
	opts = opts.withDefaults()
	if opts.TLS != nil {
		if err := opts.TLS.validate(); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Proxy{opts: opts, log: opts.Logger, metrics: m, transport: newTransport(opts)}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    p.transport,
		ErrorHandler: p.upstreamError,
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		// Without a pool every response allocates a fresh copy buffer:
		// measured, that garbage was most of the proxy's CPU per request.
		BufferPool: &bufferPool{},
		// FlushInterval stays 0: ReverseProxy already flushes every write of
		// an event stream or a response without Content-Length (streaming),
		// and buffers fixed-length bodies, which is what throughput wants.
	}
	p.current.Store(&installed{table: &Table{}})
	return p, nil
}

// newTransport is the one transport to all upstreams: no proxy from the
// environment, bounded dials and header waits, and enough idle connections
// per upstream for a busy service.
func newTransport(opts Options) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: opts.UpstreamTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// Swap installs t (nil: no routes). Requests that already chose a route
// finish on the table they started on; new requests see t.
func (p *Proxy) Swap(t *Table) {
	if t == nil {
		t = &Table{}
	}
	p.current.Store(&installed{table: t})
	p.metrics.swaps.Inc()
	p.backends.prune(t)
	p.log.Debug("route table installed", "hosts", len(t.routes))
}

// Table returns the table now installed.
func (p *Proxy) Table() *Table {
	return p.current.Load().table
}

// Handler serves the routes over whatever server it is given: the proxy
// without TLS redirects, for tests and embedding.
func (p *Proxy) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, nil)
	})
}

// targetKey is the context key of the *target.
type targetKey struct{}

// serve answers one request and records it in the metrics, also when the
// response is aborted mid-body (ReverseProxy panics with ErrAbortHandler).
// With toHTTPS, routed hosts that can have a public certificate are sent
// there instead.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, toHTTPS http.HandlerFunc) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	label := unknownHost
	defer func() { p.metrics.observe(label, sw.status(), time.Since(start)) }()
	p.dispatch(sw, r, toHTTPS, &label)
}

// dispatch answers r, setting label to the routed host for the metrics.
func (p *Proxy) dispatch(w http.ResponseWriter, r *http.Request, toHTTPS http.HandlerFunc, label *string) {
	host := canonicalHost(r.Host)
	rt, b := p.begin(host)
	if b != nil {
		defer b.inflight.Add(-1)
	}
	if rt != nil {
		*label = rt.Host
	} else if rt = p.demand(r.Context(), host); rt == nil {
		// A host OnDemand serves stays "unknown" in the metrics: anyone
		// can name one, and its series would never be deleted.
		writePage(w, r, pageNotFound)
		return
	}
	// HTTPS before credentials: a browser must never be asked for a
	// password over plain HTTP.
	if toHTTPS != nil && certmagic.SubjectQualifiesForPublicCert(host) {
		toHTTPS(w, r)
		return
	}
	if rt.Auth != nil {
		var ok bool
		if r, ok = rt.Auth.guard(w, r); !ok {
			return
		}
	}
	if rt.Touch != nil {
		rt.Touch()
	}
	switch {
	case rt.Handler != nil:
		rt.Handler.ServeHTTP(w, r)
	case rt.Unavailable != "":
		writePage(w, r, pageUnavailable(rt.Unavailable, cmp.Or(rt.RetryAfter, defaultRetryAfter)))
	default:
		p.forward(w, r, &target{route: rt, backend: b})
	}
}

// begin finds host's route in the current table and, when the route
// proxies, chooses and counts its upstream. The table is read again after
// counting: if a swap came in between, the request has not started yet and
// starts over on the new table. So once Swap returns, every request still
// bound for an upstream of the old table is counted, and Drain is exact.
func (p *Proxy) begin(host string) (*route, *backend) {
	for {
		inst := p.current.Load()
		rt := inst.table.lookup(host)
		if rt == nil || rt.Handler != nil || rt.Unavailable != "" {
			return rt, nil
		}
		b := p.backends.pick(rt, time.Now())
		b.inflight.Add(1)
		if p.current.Load() == inst {
			return rt, b
		}
		b.inflight.Add(-1)
	}
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, t *target) {
	limit := p.opts.MaxBodyBytes
	if limit >= 0 {
		if r.ContentLength > limit {
			writePage(w, r, pageTooLarge)
			return
		}
		// The server's own writer, not statusWriter: through it the server
		// learns to close the connection instead of reading the rest.
		r.Body = http.MaxBytesReader(serverWriter(w), r.Body, limit)
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

// target is where forward sends a request, carried to rewrite and
// upstreamError in the request's context.
type target struct {
	route   *route
	backend *backend
}

// rewrite sends the request to the chosen upstream. The client's Host is
// kept (apps build their links from it) and X-Forwarded-For/-Host/-Proto
// describe the client; ReverseProxy has already dropped any the client sent.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey{}).(*target)
	pr.SetURL(t.backend.target)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// upstreamError answers a request the upstream did not: 413 for a body over
// the limit, 502 when the upstream cannot be reached or fails, 504 when it
// is too slow to answer. The error goes to the log, never to the client.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(targetKey{}).(*target)
	log := p.log.With("host", t.route.Host, "service", t.route.Service, "upstream", t.backend.target.String(), "err", err)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writePage(w, r, pageTooLarge)
	case r.Context().Err() != nil:
		// The client left; 499 is what access logs call that.
		w.WriteHeader(499)
	case isDialError(err):
		t.backend.markRefused(time.Now())
		log.Warn("upstream unreachable")
		writePage(w, r, pageBadGateway)
	case isTimeout(err):
		log.Warn("upstream timed out")
		writePage(w, r, pageGatewayTimeout)
	default:
		log.Warn("upstream failed")
		writePage(w, r, pageBadGateway)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// statusWriter remembers the status for the metrics. It unwraps for
// http.ResponseController, so flushing and hijacking reach the real writer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 || w.code < 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Hijack records a protocol switch (WebSocket) as 101: ReverseProxy writes
// the 101 on the hijacked connection, past WriteHeader.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.code = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serverWriter is the writer the server gave, beneath a statusWriter.
func serverWriter(w http.ResponseWriter) http.ResponseWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw.ResponseWriter
	}
	return w
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// bufferPool lends the reverse proxy its copy buffers.
type bufferPool struct{ pool sync.Pool }

// copyBufferSize is what io.Copy would allocate itself.
const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	b.pool.Put(&buf)
}
