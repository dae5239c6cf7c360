package streaming

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// requestCache holds the CRI requests waiting for their client, each under a
// random token that may be used once before it expires. Its methods take
// now so tests can step time.
type requestCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	ttl     time.Duration
	max     int
}

type cacheEntry struct {
	req     any
	expires time.Time
}

func newRequestCache(ttl time.Duration, max int) *requestCache {
	return &requestCache{entries: map[string]cacheEntry{}, ttl: ttl, max: max}
}

// insert stores req and returns its token; it fails when max requests are
// already waiting.
func (c *requestCache) insert(req any, now time.Time) (string, error) {
	token, err := newToken()
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	if len(c.entries) >= c.max {
		return "", ErrTooManyRequests
	}
	c.entries[token] = cacheEntry{req: req, expires: now.Add(c.ttl)}
	return token, nil
}

// consume returns and forgets the request stored under token, if it has
// not expired.
func (c *requestCache) consume(token string, now time.Time) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[token]
	if !ok {
		return nil, false
	}
	delete(c.entries, token)
	if !now.Before(e.expires) {
		return nil, false
	}
	return e.req, true
}

func (c *requestCache) pruneLocked(now time.Time) {
	for t, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, t)
		}
	}
}

// newToken is 128 random bits, URL-safe.
func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
