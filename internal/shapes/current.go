package shapes

// Current reports whether v, the verdict Evaluate returned for r, still
// holds for the store as it is now: the set of shapes and templates is
// unchanged and, for a verdict that depends on individual nodes (r reads
// identity labels, or v lists nodes to narrow Filter to), so is the
// membership. It is the store's own rule, so that a cache of verdicts need
// not know it.
func (s *Store) Current(v Verdict, r *Requirements) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return v.Gen == s.gen && (v.MemberGen == s.memberGen || (!r.identity && v.Nodes == nil))
}
