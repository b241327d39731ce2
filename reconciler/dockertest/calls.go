package dockertest

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// ContainerList is the normalised path of the one Docker request an idle
// tick makes.
const ContainerList = "GET /containers/json"

// Calls tallies, from any goroutine, the requests a reconciler sends to
// Docker (give its Docker method to CountingClient) and its git
// operations (call LsRemote and Checkout from a wrapping source): the
// benchmarks check with it that an idle tick stays on the cheap path.
type Calls struct {
	mu     sync.Mutex
	counts Counts
	// trace, while not nil, collects each Docker request with when it was
	// sent after traceStart.
	trace      []string
	traceStart time.Time
}

// Counts is how many calls went to Docker (by method and NormalPath) and
// to git.
type Counts struct {
	Docker               map[string]int
	LsRemotes, Checkouts int
}

// Docker counts one Docker request; it is a CountingClient hook.
func (c *Calls) Docker(method, path string) {
	key := method + " " + NormalPath(path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts.Docker == nil {
		c.counts.Docker = map[string]int{}
	}
	c.counts.Docker[key]++
	if c.trace != nil {
		c.trace = append(c.trace, fmt.Sprintf("%s %s", time.Since(c.traceStart).Round(time.Millisecond), key))
	}
}

// LsRemote counts one ls-remote.
func (c *Calls) LsRemote() { c.git(func(n *Counts) { n.LsRemotes++ }) }

// Checkout counts one checkout.
func (c *Calls) Checkout() { c.git(func(n *Counts) { n.Checkouts++ }) }

func (c *Calls) git(count func(*Counts)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	count(&c.counts)
}

// Snapshot returns the counts so far.
func (c *Calls) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.counts
	s.Docker = maps.Clone(c.counts.Docker)
	return s
}

// StartTrace starts recording when each Docker request is sent.
func (c *Calls) StartTrace() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trace, c.traceStart = []string{}, time.Now()
}

// StopTrace returns the Docker requests since StartTrace, with their times.
func (c *Calls) StopTrace() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trace
	c.trace = nil
	return t
}

// Since is what was counted after an earlier snapshot.
func (c Counts) Since(before Counts) Counts {
	d := Counts{Docker: map[string]int{}, LsRemotes: c.LsRemotes - before.LsRemotes, Checkouts: c.Checkouts - before.Checkouts}
	for k, v := range c.Docker {
		if v -= before.Docker[k]; v != 0 {
			d.Docker[k] = v
		}
	}
	return d
}

// DockerTotal is the number of Docker requests.
func (c Counts) DockerTotal() int {
	n := 0
	for _, v := range c.Docker {
		n += v
	}
	return n
}

// Inspects counts the requests that read one object: GET
// /containers/{id}/json and its kin for images, networks and volumes.
func (c Counts) Inspects() int {
	n := 0
	for k, v := range c.Docker {
		if strings.HasPrefix(k, "GET ") && strings.Contains(k, "{id}") {
			n += v
		}
	}
	return n
}

// Cheap says how one tick's calls differ from the cheap path: one
// ls-remote and one container list, nothing else.
func (c Counts) Cheap() error {
	if c.LsRemotes == 1 && c.Checkouts == 0 && c.Docker[ContainerList] == 1 && c.DockerTotal() == 1 {
		return nil
	}
	return fmt.Errorf("%d ls-remotes, %d checkouts, docker requests: %s", c.LsRemotes, c.Checkouts, Breakdown(c.Docker))
}

// Breakdown lists the Docker requests as "key=n, ...".
func (c Counts) Breakdown() string { return Breakdown(c.Docker) }
