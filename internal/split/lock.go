package split

import (
	"errors"
	"fmt"
	"strings"
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

func lockedErr(group string, l lock) error {
	return fmt.Errorf("%w: the split of %s is held by %s until %s", ErrLocked, group, l.owner, l.until.UTC().Format(time.RFC3339))
}
