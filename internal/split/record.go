package split

import (
	"slices"

	"github.com/ballast-k8s/ballast/internal/asg"
)

// OnRecord returns the instances of g that a split has on record as moving
// (the batch in TagState and the per-instance records), sorted: instances
// that may be detaching, or detached and in no group, until a later pass
// attaches them. Empty when no batch is on record.
func OnRecord(g *asg.Group) []string {
	var ids []string
	if _, batch, ok := parseMove(g.Tags[TagState]); ok {
		for _, m := range batch {
			ids = append(ids, m.id)
		}
	}
	for id := range records(g.Tags) {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
