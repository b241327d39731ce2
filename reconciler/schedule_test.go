package reconciler

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func TestJitterDelaysEachActivationByLessThanTheMaximum(t *testing.T) {
	every := cron.Every(time.Minute)
	j := jittered{every, 5 * time.Second}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spread := map[time.Duration]bool{}
	for range 200 {
		d := j.Next(now).Sub(every.Next(now))
		if d < 0 || d >= 5*time.Second {
			t.Fatalf("jitter %s out of [0, 5s)", d)
		}
		spread[d.Truncate(time.Second)] = true
	}
	if len(spread) < 3 {
		t.Fatalf("jitter hardly varies: %v", spread)
	}
	if got := (jittered{every, 0}).Next(now); !got.Equal(every.Next(now)) {
		t.Fatalf("zero jitter moved the activation to %s", got)
	}
}

func TestRequestsCoalesceAndKeepTheForce(t *testing.T) {
	r := &Reconciler{requests: make(chan trigger, 1)}
	r.Request(TriggerSchedule)
	r.Request(TriggerSchedule)
	r.Request(TriggerSync)
	r.Request(TriggerSchedule)
	got := <-r.requests
	if !got.force {
		t.Fatalf("coalesced request lost the force of a sync: %+v", got)
	}
	select {
	case extra := <-r.requests:
		t.Fatalf("bursts should coalesce into one request, got another: %+v", extra)
	default:
	}
}
