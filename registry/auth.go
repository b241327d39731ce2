package registry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/pkg/authconfig"
	mobyregistry "github.com/moby/moby/api/types/registry"
)

// Credential is a user name and password (or access token) for one
// registry. It never prints its secret: not with %v, %+v, %#v, nor in slog.
type Credential struct {
	Username string
	Password string
}

// String implements fmt.Stringer without the secret.
func (c Credential) String() string { return c.Username + ":<redacted>" }

// GoString implements fmt.GoStringer without the secret.
func (c Credential) GoString() string { return "registry.Credential{" + c.String() + "}" }

// LogValue implements slog.LogValuer without the secret.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Credentials are logins by registry host (as go-containerregistry names it:
// docker.io is index.docker.io). They win over the Docker config for their
// hosts.
type Credentials map[string]Credential

// ParseCredentials parses HAWSER_REGISTRY_AUTH: comma-separated
// host=user:password entries, for example
// "ghcr.io=bot:ghp_xxx,registry.example.com:5000=deploy:secret". The password
// runs from the first ":" to the end of the entry, so it may contain ":" and
// "=" but not ",". Errors name the entry's host or position, never a secret.
func ParseCredentials(value string) (Credentials, error) {
	creds := Credentials{}
	for i, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		host, cred, err := parseCredential(entry)
		if err != nil {
			return nil, fmt.Errorf("HAWSER_REGISTRY_AUTH entry %d: %w", i+1, err)
		}
		if _, dup := creds[host]; dup {
			return nil, fmt.Errorf("HAWSER_REGISTRY_AUTH entry %d: host %q is given twice", i+1, host)
		}
		creds[host] = cred
	}
	return creds, nil
}

func parseCredential(entry string) (string, Credential, error) {
	host, login, ok := strings.Cut(entry, "=")
	host = strings.TrimSpace(host)
	if !ok || host == "" {
		return "", Credential{}, fmt.Errorf(`want host=user:password`)
	}
	reg, err := name.NewRegistry(strings.ToLower(host), name.StrictValidation)
	if err != nil || strings.Contains(host, "/") {
		return "", Credential{}, fmt.Errorf("host %q is not a registry host[:port]", host)
	}
	user, password, ok := strings.Cut(login, ":")
	if !ok || user == "" || password == "" {
		return "", Credential{}, fmt.Errorf("host %q: want user:password after %q", host, "=")
	}
	return reg.RegistryStr(), Credential{Username: user, Password: password}, nil
}

// Resolve implements authn.Keychain: the login for target's registry, or
// anonymous.
func (cs Credentials) Resolve(target authn.Resource) (authn.Authenticator, error) {
	c, ok := cs[target.RegistryStr()]
	if !ok {
		return authn.Anonymous, nil
	}
	return &authn.Basic{Username: c.Username, Password: c.Password}, nil
}

// credentialSource says where the credentials for repo come from, for error
// messages: the override, the Docker config, or nowhere.
func (c *Checker) credentialSource(ctx context.Context, repo name.Repository) string {
	if _, ok := c.override[repo.RegistryStr()]; ok {
		return "credentials from HAWSER_REGISTRY_AUTH"
	}
	auth, err := authn.Resolve(ctx, c.docker, repo)
	switch {
	case err != nil:
		return "no credentials (the Docker config is unreadable)"
	case auth == authn.Anonymous:
		return "no credentials (anonymous)"
	}
	return "credentials from the Docker config"
}

// PullAuth returns the X-Registry-Auth value the Docker engine needs to pull
// ref with the credentials the checks use: base64url JSON, "{}" when
// anonymous. It fits images.AuthFunc.
func (c *Checker) PullAuth(ctx context.Context, ref string) (string, error) {
	r, err := c.parse(ref)
	if err != nil {
		return "", err
	}
	reg := r.Context().Registry
	auth, err := authn.Resolve(ctx, c.keychain, r.Context())
	if err != nil {
		return "", fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return "", fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	ac := mobyregistry.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	}
	if ac != (mobyregistry.AuthConfig{}) {
		ac.ServerAddress = reg.RegistryStr()
	}
	encoded, err := authconfig.Encode(ac)
	if err != nil {
		return "", fmt.Errorf("encode credentials for %s: %w", reg.RegistryStr(), err)
	}
	return encoded, nil
}
