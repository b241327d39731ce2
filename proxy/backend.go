package proxy

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// refusedCooldown is how long a replica that refused a connection is passed
// over while its siblings serve: long enough to spare clients a string of
// 502s from a crashed replica, short enough to notice it is back.
const refusedCooldown = 2 * time.Second

// drainPoll is how often Drain looks at the in-flight count.
const drainPoll = 20 * time.Millisecond

// backend is one upstream as the proxy knows it across tables: how many
// requests it serves now, and until when it is passed over.
type backend struct {
	target    *url.URL
	inflight  atomic.Int64
	downUntil atomic.Int64 // unix nanoseconds
}

func (b *backend) down(now time.Time) bool { return b.downUntil.Load() > now.UnixNano() }

func (b *backend) markRefused(now time.Time) {
	b.downUntil.Store(now.Add(refusedCooldown).UnixNano())
}

// backends holds one backend per upstream address, shared by all tables so
// that an upstream kept by a new table keeps its count.
type backends struct {
	m sync.Map // canonical upstream URL → *backend
}

func (bs *backends) get(target *url.URL) *backend {
	key := target.String()
	if b, ok := bs.m.Load(key); ok {
		return b.(*backend)
	}
	b, _ := bs.m.LoadOrStore(key, &backend{target: target})
	return b.(*backend)
}

func (bs *backends) lookup(upstream string) *backend {
	b, ok := bs.m.Load(canonicalUpstream(upstream))
	if !ok {
		return nil
	}
	return b.(*backend)
}

// pick chooses the replica for the next request of rt: round-robin over the
// replicas not passed over, or over all of them when every one is.
func (bs *backends) pick(rt *route, now time.Time) *backend {
	n := uint32(len(rt.targets))
	start := rt.next.Add(1) - 1
	for i := range n {
		if b := bs.get(rt.targets[(start+i)%n]); !b.down(now) {
			return b
		}
	}
	return bs.get(rt.targets[start%n])
}

// prune forgets idle upstreams the table no longer routes to. A request that
// still counts on a forgotten backend re-checks the table and starts over
// (see Proxy.begin), so Drain never misses it.
func (bs *backends) prune(keep *Table) {
	live := make(map[string]bool)
	for _, rt := range keep.routes {
		for _, t := range rt.targets {
			live[t.String()] = true
		}
	}
	bs.m.Range(func(key, value any) bool {
		if b := value.(*backend); !live[key.(string)] && b.inflight.Load() == 0 {
			bs.m.CompareAndDelete(key, b)
		}
		return true
	})
}

// InFlight is the number of requests being served by upstream (as given in
// a Route), WebSocket connections included.
func (p *Proxy) InFlight(upstream string) int {
	if b := p.backends.lookup(upstream); b != nil {
		return int(b.inflight.Load())
	}
	return 0
}

// Drain waits until upstream serves no request, or ctx ends. Call it after
// Swap has installed a table without upstream: every request that chose
// upstream before the swap is counted by then.
func (p *Proxy) Drain(ctx context.Context, upstream string) error {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		n := p.InFlight(upstream)
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %d requests still in flight: %w", upstream, n, ctx.Err())
		case <-tick.C:
		}
	}
}
