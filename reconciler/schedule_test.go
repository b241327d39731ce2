package reconciler

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func TestJitterDelaysEachActivationByLessThanTheMaximum(t *testing.T) {
	every := cron.Every(time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spread := map[time.Duration]bool{}
	for range 200 {
		j := &jittered{Schedule: every, max: 5 * time.Second}
		d := j.Next(now).Sub(every.Next(now))
		if d < 0 || d >= 5*time.Second {
			t.Fatalf("jitter %s out of [0, 5s)", d)
		}
		spread[d.Truncate(time.Second)] = true
	}
	if len(spread) < 3 {
		t.Fatalf("jitter hardly varies: %v", spread)
	}
	if got := (&jittered{Schedule: every}).Next(now); !got.Equal(every.Next(now)) {
		t.Fatalf("zero jitter moved the activation to %s", got)
	}
}

func TestJitterDoesNotAccumulateOverTicks(t *testing.T) {
	j := &jittered{Schedule: cron.Every(time.Minute), max: 30 * time.Second}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	start := at
	for range 100 {
		at = j.Next(at) // cron asks again at the delayed activation
	}
	if drift := at.Sub(start) - 100*time.Minute; drift < 0 || drift >= 30*time.Second {
		t.Fatalf("after 100 ticks the schedule is %s off", drift)
	}
}

func TestRequestsCoalesceWithoutBlockingAndKeepForceAndServices(t *testing.T) {
	r := &Reconciler{wake: make(chan struct{}, 1)}
	r.Request(TriggerSchedule)
	r.Request(Trigger{Name: "sync", Recreate: []string{"web"}})
	r.Request(TriggerSync)
	r.Request(TriggerSchedule)
	got, ok := r.take()
	if !ok || !got.Force || got.Name != "sync" || len(got.Recreate) != 1 || got.Recreate[0] != "web" {
		t.Fatalf("coalesced request = %+v", got)
	}
	if extra, ok := r.take(); ok {
		t.Fatalf("bursts should coalesce into one request, got another: %+v", extra)
	}
}
