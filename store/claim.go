package store

import (
	"cmp"
	"slices"
)

// ClaimCandidate is a due message as a claim reads it.
type ClaimCandidate struct {
	ID             string
	QueueName      string
	FlowControlKey string
	Attempts       int

	// DueAt is in Unix milliseconds.
	DueAt int64
}

// compareDue orders candidates by due time, then id, as claims return them.
func compareDue(a, b ClaimCandidate) int {
	if c := cmp.Compare(a.DueAt, b.DueAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// FlowGate is the state of a flow-control key as a claim reads it while it
// holds the key's lock. Times are Unix milliseconds.
type FlowGate struct {
	Key         string
	Paused      bool
	Parallelism int
	Rate        int
	PeriodMS    int64

	// InFlight counts ACTIVE messages of the key whose lease has not
	// expired, and EarliestLease is the first of those leases to expire,
	// or 0 when none is in flight.
	InFlight      int
	EarliestLease int64

	// Starts counts the attempts started in the rate window that ends at
	// the claim's time. NthStart returns the start time of the n-th oldest
	// of them, from 0.
	Starts   int
	NthStart func(n int) (int64, error)

	// Generation is the key's generation when it was read; SetFlowGate
	// takes it so that a wake-up in between is not lost.
	Generation int64
}

// ClaimLoader reads and notes the state of flow-control keys inside a
// claim's transaction.
type ClaimLoader interface {
	// LoadFlow locks and reads a key. It returns nil and no error when
	// another claim holds the key's lock, and the claim then skips the
	// key's messages. A key without a stored row has no limits.
	LoadFlow(key string) (*FlowGate, error)

	// SetFlowGate notes that the key admits no message before until, so
	// later claims skip its messages until then. It does nothing when the
	// key's generation is no longer generation.
	SetFlowGate(key string, generation, until int64) error
}

// ClaimPlan chooses the messages of one claim under the limits of queues
// and flow-control keys. The backend feeds it the startable queue
// messages (AddHeads) and the other due messages in due order
// (ConsiderScanned), then claims Chosen.
type ClaimPlan struct {
	// Chosen are the messages to claim, in the order they were admitted.
	Chosen []ClaimCandidate

	now    int64
	limit  int
	loader ClaimLoader

	flows map[string]*flowState

	// heads are the queue messages that may start, in due order, and
	// stopped holds the queues whose next head must not start in this
	// claim, because an earlier one could not.
	heads   []ClaimCandidate
	stopped map[string]bool
}

// flowState is a key's gate with the claim's own admissions.
type flowState struct {
	gate     *FlowGate // nil when another claim holds the key
	admitted int
	blocked  bool
}

// NewClaimPlan returns a plan for a claim of up to limit messages at now
// (Unix milliseconds).
func NewClaimPlan(now int64, limit int, loader ClaimLoader) *ClaimPlan {
	return &ClaimPlan{now: now, limit: limit, loader: loader, flows: map[string]*flowState{}, stopped: map[string]bool{}}
}

// Full reports whether the plan has chosen its limit.
func (p *ClaimPlan) Full() bool {
	return len(p.Chosen) >= p.limit
}

// Flow returns the gate of a key that the plan read, or nil.
func (p *ClaimPlan) Flow(key string) *FlowGate {
	if st := p.flows[key]; st != nil {
		return st.gate
	}
	return nil
}

// AddHeads adds the waiting messages of one queue that may start, in queue
// order: those among the first free slots, up to the first that is not
// due yet. They are considered in due order among the scanned messages,
// and once one of them cannot start, the later ones wait too, so a queue
// starts its messages in the order they were enqueued.
func (p *ClaimPlan) AddHeads(heads []ClaimCandidate) {
	p.heads = append(p.heads, heads...)
	slices.SortFunc(p.heads, compareDue)
}

// ConsiderScanned considers the queue heads due before c, then c. The
// backend passes the other due messages in due order.
func (p *ClaimPlan) ConsiderScanned(c ClaimCandidate) error {
	for len(p.heads) > 0 && !p.Full() && compareDue(p.heads[0], c) < 0 {
		if err := p.considerHead(); err != nil {
			return err
		}
	}
	if p.Full() {
		return nil
	}
	_, err := p.consider(c)
	return err
}

// Finish considers the queue heads left after the last scanned message.
func (p *ClaimPlan) Finish() error {
	for len(p.heads) > 0 && !p.Full() {
		if err := p.considerHead(); err != nil {
			return err
		}
	}
	return nil
}

// considerHead considers the first pending queue head.
func (p *ClaimPlan) considerHead() error {
	head := p.heads[0]
	p.heads = p.heads[1:]
	if p.stopped[head.QueueName] {
		return nil
	}
	ok, err := p.consider(head)
	if err != nil {
		return err
	}
	if !ok {
		p.stopped[head.QueueName] = true
	}
	return nil
}

// consider admits c when its flow-control key, if any, has room, and
// reports whether it did.
func (p *ClaimPlan) consider(c ClaimCandidate) (bool, error) {
	if c.FlowControlKey == "" {
		p.Chosen = append(p.Chosen, c)
		return true, nil
	}

	st, ok := p.flows[c.FlowControlKey]
	if !ok {
		gate, err := p.loader.LoadFlow(c.FlowControlKey)
		if err != nil {
			return false, err
		}
		st = &flowState{gate: gate}
		p.flows[c.FlowControlKey] = st
	}
	if st.gate == nil || st.blocked {
		return false, nil
	}

	g := st.gate
	if g.Paused {
		st.blocked = true
		return false, nil
	}
	if g.Parallelism > 0 && g.InFlight+st.admitted >= g.Parallelism {
		// A slot frees when an attempt ends, which wakes the key, or when a
		// lease expires, which no event reports.
		until := p.now + GateRecheck.Milliseconds()
		if g.EarliestLease > p.now && g.EarliestLease < until {
			until = g.EarliestLease
		}
		return false, p.block(st, until)
	}
	if g.Rate > 0 && g.Starts+st.admitted >= g.Rate {
		until, err := p.rateOpensAt(st)
		if err != nil {
			return false, err
		}
		return false, p.block(st, until)
	}

	st.admitted++
	p.Chosen = append(p.Chosen, c)
	return true, nil
}

// rateOpensAt returns when the sliding window of st's key next holds fewer
// than Rate starts: when the oldest starts beyond Rate-1 have left it. The
// window holds the stored starts, oldest first, then this claim's
// admissions at now.
func (p *ClaimPlan) rateOpensAt(st *flowState) (int64, error) {
	g := st.gate
	n := g.Starts + st.admitted - g.Rate
	if n >= g.Starts {
		return p.now + g.PeriodMS, nil
	}
	start, err := g.NthStart(n)
	if err != nil {
		return 0, err
	}
	return start + g.PeriodMS, nil
}

// block marks st's key as full for the rest of the claim and notes it for
// later claims.
func (p *ClaimPlan) block(st *flowState, until int64) error {
	st.blocked = true
	return p.loader.SetFlowGate(st.gate.Key, st.gate.Generation, until)
}

// ClaimPageSize is the number of due messages a claim reads at a time.
const ClaimPageSize = 256
