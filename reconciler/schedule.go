package reconciler

import (
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule requests a reconcile at every activation of the schedule, each
// delayed by a random part of jitter so many hosts do not poll one remote
// at the same second. Activations while a reconcile runs coalesce with it.
// The returned func stops the schedule.
func (r *Reconciler) Schedule(s cron.Schedule, jitter time.Duration) (stop func()) {
	c := cron.New()
	c.Schedule(jittered{s, jitter}, cron.FuncJob(func() { r.Request(TriggerSchedule) }))
	c.Start()
	return func() { <-c.Stop().Done() }
}

// jittered delays each activation of a schedule by up to max.
type jittered struct {
	cron.Schedule
	max time.Duration
}

func (j jittered) Next(t time.Time) time.Time {
	next := j.Schedule.Next(t)
	if j.max <= 0 {
		return next
	}
	return next.Add(rand.N(j.max))
}
