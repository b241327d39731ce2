package webhook

import (
	"strconv"
	"testing"
	"time"
)

func TestDeliveriesForgetTheOldestAndTheExpired(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d := newDeliveries()
	d.now = func() time.Time { return now }

	if _, dup := d.record("a"); dup {
		t.Fatal("first delivery reported as a replay")
	}
	now = now.Add(time.Hour)
	if at, dup := d.record("a"); !dup || !at.Equal(now.Add(-time.Hour)) {
		t.Errorf("replay: got %v %v, want true and the first arrival", at, dup)
	}

	for i := range maxDeliveries {
		d.record("burst-" + strconv.Itoa(i))
	}
	if len(d.order) != maxDeliveries || len(d.at) != maxDeliveries {
		t.Errorf("holds %d ids (%d in the map), want %d", len(d.order), len(d.at), maxDeliveries)
	}
	if _, dup := d.record("a"); dup {
		t.Error("the oldest id survived a thousand newer ones")
	}
	if _, dup := d.record("burst-999"); !dup {
		t.Error("a recent id was forgotten")
	}

	now = now.Add(deliveryTTL)
	if _, dup := d.record("burst-999"); dup {
		t.Error("an id older than a day is still remembered")
	}
	if len(d.order) != 1 || len(d.at) != 1 {
		t.Errorf("holds %d ids after a day, want only the new one", len(d.order))
	}
}
