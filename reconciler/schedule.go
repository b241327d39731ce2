package reconciler

import (
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule requests a reconcile at every activation of the git schedule and
// a check of the registries at every activation of the registry schedule
// (at every git poll when it is nil), each delayed by a random part of
// jitter so many hosts do not poll one remote at the same second.
// Activations while a reconcile runs coalesce with it. The returned func
// stops the schedules.
func (r *Reconciler) Schedule(git, registry cron.Schedule, jitter time.Duration) (stop func()) {
	c := cron.New()
	poll := TriggerSchedule
	if registry == nil {
		poll.Images = true
	} else {
		c.Schedule(&jittered{Schedule: registry, max: jitter}, cron.FuncJob(func() { r.Request(TriggerRegistry) }))
	}
	c.Schedule(&jittered{Schedule: git, max: jitter}, cron.FuncJob(func() { r.Request(poll) }))
	c.Start()
	return func() { <-c.Stop().Done() }
}

// jittered delays each activation of a schedule by up to max. cron asks for
// the activation after the last one, which was delayed: the schedule goes on
// from the undelayed time, so delays do not add up over the ticks of an
// @every schedule. Only cron's own goroutine calls Next.
type jittered struct {
	cron.Schedule
	max  time.Duration
	base time.Time // the last undelayed activation
}

func (j *jittered) Next(t time.Time) time.Time {
	if !j.base.IsZero() && !t.Before(j.base) && t.Sub(j.base) <= j.max {
		t = j.base
	}
	j.base = j.Schedule.Next(t)
	if j.max <= 0 {
		return j.base
	}
	return j.base.Add(rand.N(j.max))
}
