package split

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// The split lock keeps two splitters (`az-balancer split` and `run
// --enforce=split`, or two of either) from interleaving their passes over one
// group, which would record one batch over another's and lose it.
//
// It is a tag on the group being split, TagLock = "<owner> <since> <until>"
// (RFC 3339 times), so it lives in AWS beside the split's progress and needs
// no other store. Auto Scaling tags have no compare-and-swap, so a splitter
// takes the lock in two passes, as in Fischer's mutual exclusion: it claims
// the lock when it finds it free (absent or expired), and makes split steps
// only on a later pass, at least Settle after its claim, if the tag still
// names it. Two splitters that both found it free both write; the later write
// stays, and only its author proceeds, provided a claim lands within Settle of
// the read that found the lock free (one Auto Scaling call). The holder renews
// `until` on its passes and checks, before each step, that the lock has not
// run out; a crashed holder's lock lapses after Duration.
//
// Nothing in the SDK bounds how late a write lands: its retryer backs off for
// up to 20 s per attempt under throttling, longer than Settle. So a claim is
// sent in one attempt (no SDK retries) with a deadline of Settle/3, and a
// claim whose call returned later than Settle/3 after it was decided is void:
// this process never takes the lock on it, and waits for it to lapse like a
// lock of another splitter. And since Fischer's bound is then the only thing
// between two holders, the holder re-reads the lock (and the state tag)
// right before each write that moves instances or records a batch (the state
// tag, DetachInstances, AttachInstances), and stops the pass if the lock no
// longer names this claim.
//
// The owner names a process, and a nonce keeps two processes apart whose host
// name and pid agree (a Job's pod re-created under the same name, both pid 1).

// TagLock holds the split lock of a group.
const TagLock = "ballast.k8s.io/split-lock"

// Defaults of the lock.
const (
	DefaultLockDuration = 10 * time.Minute
	DefaultLockSettle   = 15 * time.Second
)

// ErrLocked is returned when another splitter holds the group's lock.
var ErrLocked = errors.New("another splitter holds the split lock")

type lock struct {
	owner        string
	since, until time.Time
}

func (l lock) String() string {
	return l.owner + " " + l.since.UTC().Format(time.RFC3339) + " " + l.until.UTC().Format(time.RFC3339)
}

// parseLock reads the tag; a malformed value counts as no lock, reported.
func parseLock(v string) (lock, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return lock{}, fmt.Errorf("tag %s=%q: want \"<owner> <since> <until>\"", TagLock, v)
	}
	since, err1 := time.Parse(time.RFC3339, f[1])
	until, err2 := time.Parse(time.RFC3339, f[2])
	if err := errors.Join(err1, err2); err != nil {
		return lock{}, fmt.Errorf("tag %s=%q: %w", TagLock, v, err)
	}
	return lock{owner: f[0], since: since, until: until}, nil
}

// ownerName makes an owner fit the tag: no spaces, bounded length.
func ownerName(s string) string {
	s = strings.Join(strings.Fields(s), "_")
	if s == "" {
		s = "unnamed"
	}
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// NewOwner names this process in the split lock: prefix@host/pid/nonce, with
// a random nonce drawn on each call. Call it once per process (or per run of
// `split`) and keep the name: a new name is a new owner.
func NewOwner(prefix string) string {
	host, _ := os.Hostname()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to the clock.
		return fmt.Sprintf("%s@%s/%d/%x", prefix, host, os.Getpid(), time.Now().UnixNano())
	}
	return fmt.Sprintf("%s@%s/%d/%s", prefix, host, os.Getpid(), hex.EncodeToString(b[:]))
}

// voidClaims are the lock values a Splitter wrote too late (or with an
// error) to rely on: it never holds the lock on them. Keep one Splitter per
// process and owner, so that it remembers them.
type voidClaims struct {
	mu   sync.Mutex
	vals map[string]bool
}

func (v *voidClaims) add(val string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.vals == nil {
		v.vals = map[string]bool{}
	}
	v.vals[val] = true
}

func (v *voidClaims) has(val string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.vals[val]
}

func lockedErr(group string, l lock) error {
	return fmt.Errorf("%w: the split of %s is held by %s until %s", ErrLocked, group, l.owner, l.until.UTC().Format(time.RFC3339))
}
