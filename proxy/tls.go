package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/time/rate"
)

// Defaults of TLSOptions.
const (
	DefaultIssuanceBurst    = 10
	DefaultIssuanceInterval = time.Minute
)

// TLSOptions turn on HTTPS with certificates from an ACME CA.
//
// Certificates are obtained on demand, at the first TLS handshake for a
// host, and only for hosts in the installed route table; new issuances are
// rate-limited. On demand rather than managed, because then the route table
// is the only list of names: nothing has to be kept in step with every
// Swap, a host that leaves the table is refused at its next load or
// renewal, and a preview nobody opens costs no certificate. The price is
// a few seconds on the very first handshake of a host.
//
// Configuring TLS means agreeing to the CA's terms of service. The CA
// validates on ports 80 and 443: HTTPAddr and HTTPSAddr must receive them.
type TLSOptions struct {
	// Email is the ACME account's contact (expiry notices); may be empty.
	Email string
	// CA is the ACME directory URL; empty means Let's Encrypt production.
	CA string
	// StorageDir holds the account, keys and certificates; certificates
	// found there are served after a restart without asking the CA.
	StorageDir string
	// TrustedRoots, when set, are the roots trusted for the CA's own HTTPS
	// endpoint (a private CA); nil trusts the system's roots.
	TrustedRoots *x509.CertPool
	// IssuanceBurst and IssuanceInterval bound new certificates (renewals
	// are not counted): a burst of IssuanceBurst, then one per interval.
	IssuanceBurst    int
	IssuanceInterval time.Duration
}

func (o *TLSOptions) validate() error {
	if o.StorageDir == "" {
		return errors.New("tls: a storage directory is required")
	}
	if o.IssuanceBurst < 0 || o.IssuanceInterval < 0 {
		return errors.New("tls: negative issuance limit")
	}
	return nil
}

// errNotRouted refuses certificates for hosts hawser does not serve, so a
// client cannot make hawser ask the CA for arbitrary names.
var errNotRouted = errors.New("host is not in the route table")

// errIssuanceLimited refuses a new certificate beyond the issuance rate.
var errIssuanceLimited = errors.New("certificate issuance rate limit reached")

// certManager is certmagic set up for one Serve: its cache runs a
// maintenance goroutine (renewals), stopped when Serve returns.
type certManager struct {
	cache  *certmagic.Cache
	config *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// newCertManager wires certmagic to the live route table. httpAddr and
// httpsAddr are where the challenges are answered: certmagic then finds
// the ports taken and relies on our listeners instead of opening its own.
func (p *Proxy) newCertManager(httpAddr, httpsAddr net.Addr) *certManager {
	o := p.opts.TLS
	zl := newZapLogger(p.log.With("component", "certmagic"))
	limiter := rate.NewLimiter(rate.Every(cmp.Or(o.IssuanceInterval, DefaultIssuanceInterval)), cmp.Or(o.IssuanceBurst, DefaultIssuanceBurst))
	cm := &certManager{}
	cm.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cm.config, nil },
		Logger:           zl,
	})
	cm.config = certmagic.New(cm.cache, certmagic.Config{
		Storage:  &certmagic.FileStorage{Path: o.StorageDir},
		OnDemand: &certmagic.OnDemandConfig{DecisionFunc: p.allowCertificate},
		OnEvent:  p.limitIssuance(limiter, rate.NewLimiter(rate.Every(onDemandIssuanceInterval), onDemandIssuanceBurst)),
		Logger:   zl,
	})
	httpHost, httpPort := splitAddr(httpAddr)
	_, httpsPort := splitAddr(httpsAddr)
	cm.issuer = certmagic.NewACMEIssuer(cm.config, certmagic.ACMEIssuer{
		CA:             cmp.Or(o.CA, certmagic.LetsEncryptProductionCA),
		Email:          o.Email,
		Agreed:         true,
		TrustedRoots:   o.TrustedRoots,
		ListenHost:     httpHost,
		AltHTTPPort:    httpPort,
		AltTLSALPNPort: httpsPort,
		Logger:         zl,
	})
	cm.config.Issuers = []certmagic.Issuer{cm.issuer}
	return cm
}

// tlsConfig serves HTTP/2 and HTTP/1.1, and answers TLS-ALPN-01 challenges.
func (cm *certManager) tlsConfig() *tls.Config {
	c := cm.config.TLSConfig()
	c.NextProtos = append([]string{"h2", "http/1.1"}, c.NextProtos...)
	c.MinVersion = tls.VersionTLS12
	return c
}

// allowCertificate is certmagic's DecisionFunc: a certificate may be loaded
// or obtained only for a host of the installed table or one OnDemand
// serves, asked afresh at every handshake that needs one.
func (p *Proxy) allowCertificate(ctx context.Context, name string) error {
	if !p.Table().Has(name) && p.demand(ctx, canonicalHost(name)) == nil {
		p.log.Debug("certificate refused", "host", name, "reason", errNotRouted)
		return fmt.Errorf("%s: %w", name, errNotRouted)
	}
	return nil
}

// limitIssuance rate-limits new certificates through certmagic's
// cert_obtaining event, which fires only when the CA is about to be asked:
// loading certificates from storage after a restart is never limited.
// Hosts only OnDemand serves (per-commit previews, which a stranger can
// name) draw on a budget of their own, so they can never use up the one of
// the routed hosts.
func (p *Proxy) limitIssuance(routed, onDemand *rate.Limiter) func(context.Context, string, map[string]any) error {
	return func(_ context.Context, event string, data map[string]any) error {
		if event != "cert_obtaining" {
			return nil
		}
		host, _ := data["identifier"].(string)
		limiter := routed
		if !p.Table().Has(host) {
			limiter = onDemand
		}
		if renewal, _ := data["renewal"].(bool); renewal || limiter.Allow() {
			return nil
		}
		p.log.Warn("certificate not requested", "host", host, "reason", errIssuanceLimited)
		// Without ErrNoRetry, certmagic would retry with backoff and hold
		// the client's handshake for minutes.
		return certmagic.ErrNoRetry{Err: errIssuanceLimited}
	}
}

// On-demand hosts get at most this many new certificates at once, and one
// more per onDemandIssuanceInterval.
const (
	onDemandIssuanceBurst    = 3
	onDemandIssuanceInterval = time.Hour
)

func splitAddr(addr net.Addr) (string, int) {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, n
}
