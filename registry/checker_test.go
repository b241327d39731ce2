package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestUnchangedTagIsUpToDate(t *testing.T) {
	reg := newTestRegistry(t)
	v1 := reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", v1)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Update || res.Remote != v1.String() || res.Local != v1.String() {
		t.Fatalf("want up to date at %s, got %+v", v1, res)
	}
}

func TestNewDigestUnderSameTagIsAnUpdate(t *testing.T) {
	reg := newTestRegistry(t)
	v1 := reg.push("app:stable", randomImage(t))
	v2 := reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", v1)}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Update || res.Remote != v2.String() || res.Local != v1.String() || res.Ref != reg.ref("app:stable") {
		t.Fatalf("want update %s -> %s, got %+v", v1, v2, res)
	}
}

func TestDigestsOfOtherRepositoriesDoNotCount(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("mirror/app", d)}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Update {
		t.Fatalf("the same digest pulled as another repository must not count as this one, got %+v", res)
	}
}

func TestUnchangedTagCostsOneHeadPerCheck(t *testing.T) {
	for _, login := range []bool{false, true} {
		t.Run(map[bool]string{false: "anonymous", true: "token"}[login], func(t *testing.T) {
			reg := newTestRegistry(t)
			d := reg.push("app:stable", randomImage(t))
			opts := Options{}
			if login {
				reg.requireLogin("bot", "hunter2")
				opts.Auth = Credentials{reg.host(): {Username: "bot", Password: "hunter2"}}
			}
			c := newTestChecker(t, opts)
			chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}

			if _, err := c.Check(context.Background(), chk); err != nil {
				t.Fatal(err)
			}
			first := reg.requestsSince(0)
			t.Logf("first check: %v", first)
			if login && !slices.Contains(first, "GET /token") {
				t.Fatalf("first check should fetch a token, made %v", first)
			}
			for i := range 20 {
				n := reg.requestCount()
				res, err := c.Check(context.Background(), chk)
				if err != nil {
					t.Fatal(err)
				}
				if res.Update {
					t.Fatalf("check %d: nothing was pushed, got an update: %+v", i, res)
				}
				if got := reg.requestsSince(n); !slices.Equal(got, []string{"HEAD /v2/app/manifests/stable"}) {
					t.Fatalf("check %d: want exactly one HEAD, made %v", i, got)
				}
			}
		})
	}
}

func TestPolicyNoneAndDigestPinsAskNoRegistry(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	for _, chk := range []Check{
		{Ref: reg.ref("app:stable"), Policy: PolicyNone},
		{Ref: reg.host() + "/app@" + d.String()},
	} {
		res, err := c.Check(context.Background(), chk)
		if err != nil {
			t.Fatal(err)
		}
		if res.Update || res.Remote != "" {
			t.Errorf("%+v: want no update and no remote digest, got %+v", chk, res)
		}
	}
	if n := reg.requestCount(); n != 0 {
		t.Fatalf("want no request, made %v", reg.requestsSince(0))
	}
}

func TestMissingLocalImageIsAnUpdate(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Update {
		t.Fatalf("want update for an image not present locally, got %+v", res)
	}
}

func TestUnknownTagIsAnErrorNotTransient(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push("app:stable", randomImage(t))
	c := newTestChecker(t, Options{})

	_, err := c.Check(context.Background(), Check{Ref: reg.ref("app:nope")})
	if err == nil || IsTransient(err) || !strings.Contains(err.Error(), "app:nope") {
		t.Fatalf("want a terminal error naming the reference, got %v", err)
	}
}

func TestBadPolicyIsRejected(t *testing.T) {
	c := newTestChecker(t, Options{})
	_, err := c.Check(context.Background(), Check{Ref: "127.0.0.1:1/app:1", Policy: "sometimes"})
	var te *TransientError
	if err == nil || errors.As(err, &te) {
		t.Fatalf("want an error for an unknown policy, got %v", err)
	}
}
