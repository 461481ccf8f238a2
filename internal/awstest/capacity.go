package awstest

import "strings"

// RefuseLaunches makes a zone short of capacity, as AWS is when it answers
// InsufficientInstanceCapacity: a group that scales out launches in its other
// zones instead (recording a failed activity for the zone it tried first),
// and AZRebalance, which launches before it terminates, cannot rebalance
// into it. RefuseLaunches(zone, false) is the zone recovering; the next
// AZRebalance then evens the groups out.
func (s *Server) RefuseLaunches(zone string, refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.short == nil {
		s.short = map[string]bool{}
	}
	if refuse {
		s.short[zone] = true
		return
	}
	delete(s.short, zone)
	for k := range s.reported {
		if strings.HasSuffix(k, "\x00"+zone) {
			delete(s.reported, k)
		}
	}
}

// leastCrowded returns the zone of the group with the fewest InService
// instances among those that accept launches, "" when none does. A short zone
// that would have been chosen gets a failed activity, as AWS reports it.
func (s *Server) leastCrowded(g *group, byZone map[string][]*Instance) string {
	least, tried := "", ""
	for _, z := range g.Zones {
		if tried == "" || len(byZone[z]) < len(byZone[tried]) {
			tried = z
		}
		if s.short[z] {
			continue
		}
		if least == "" || len(byZone[z]) < len(byZone[least]) {
			least = z
		}
	}
	if tried != least && s.short[tried] {
		s.failedLaunch(g, tried)
	}
	return least
}

func (s *Server) failedLaunch(g *group, zone string) {
	key := g.Name + "\x00" + zone
	if s.reported[key] {
		return // one failed activity per group and zone while the zone is short
	}
	if s.reported == nil {
		s.reported = map[string]bool{}
	}
	s.reported[key] = true
	s.activity(g, "Launching a new EC2 instance in "+zone, "We currently do not have sufficient capacity in the Availability Zone you requested (InsufficientInstanceCapacity)")
	s.activities[len(s.activities)-1].Status = "Failed"
}
