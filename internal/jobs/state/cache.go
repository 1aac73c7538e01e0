package state

import (
	"container/list"
	"sync"

	"github.com/reconciler/reconciler/internal/jobs/event"
)

// stateCache keeps the desired state this process last read or wrote for
// the most recently folded scripts, with its revision, so that a fold
// skips the KV read when nothing else wrote the key since. It is only a
// hint: every write is a compare-and-set on the cached revision, and a
// lost one reloads from KV. Entries are never modified in place (callers
// fold a Clone). The number of entries is bounded (LRU), so memory does
// not grow with the number of scripts.
type stateCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recent; values are *cacheEntry
	items map[string]*list.Element
}

type cacheEntry struct {
	key   string
	state *event.DesiredState
	rev   uint64
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns the cached state of key (not to be modified) and its
// revision.
func (c *stateCache) get(key string) (*event.DesiredState, uint64, bool) {
	if c == nil {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, 0, false
	}
	c.ll.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	return e.state, e.rev, true
}

// put records state at rev for key, unless a newer revision is cached.
func (c *stateCache) put(key string, state *event.DesiredState, rev uint64) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry)
		if rev >= e.rev {
			e.state, e.rev = state, rev
		}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, state: state, rev: rev})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

// drop forgets key (its cached revision turned out to be old).
func (c *stateCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.Remove(el)
		delete(c.items, key)
	}
}
