package webhook

import (
	"sync"
	"time"
)

// Bounds of the memory of deliveries: enough for a busy day of pushes, and
// no more however many arrive.
const (
	maxDeliveries = 1000
	deliveryTTL   = 24 * time.Hour
	maxDeliveryID = 128
)

// deliveries remembers the ids of the deliveries acted on recently.
type deliveries struct {
	mu sync.Mutex
	at map[string]time.Time
	// order holds the ids oldest first. Dropping from its front and
	// appending at its end reallocates it at about twice the live length,
	// so the old array is freed and its size stays bounded.
	order []string
	now   func() time.Time
}

func newDeliveries() *deliveries {
	return &deliveries{at: map[string]time.Time{}, now: time.Now}
}

// record remembers id; when it was seen already it reports when, and true.
func (d *deliveries) record(id string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for len(d.order) > 0 && now.Sub(d.at[d.order[0]]) >= deliveryTTL {
		d.dropOldest()
	}
	if at, ok := d.at[id]; ok {
		return at, true
	}
	d.at[id] = now
	d.order = append(d.order, id)
	if len(d.order) > maxDeliveries {
		d.dropOldest()
	}
	return now, false
}

func (d *deliveries) dropOldest() {
	delete(d.at, d.order[0])
	d.order = d.order[1:]
}
