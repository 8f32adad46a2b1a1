package store

import (
	"context"
	"slices"
	"time"

	"github.com/ferryhq/ferry"
)

// QueueStore persists queues, URL groups and flow-control keys.
// MessageClaim applies the limits of queues and flow-control keys, and
// storing a message creates its queue and its flow-control key when they
// do not exist yet.
type QueueStore interface {
	// QueueUpsert creates a queue or changes the settings that params sets,
	// and returns the queue.
	QueueUpsert(ctx context.Context, params *QueueUpsertParams) (*ferry.Queue, error)

	// QueueGet returns a queue with its lag, or ErrNotFound.
	QueueGet(ctx context.Context, name string) (*ferry.Queue, error)

	// QueueList returns every queue with its lag, by name.
	QueueList(ctx context.Context) ([]*ferry.Queue, error)

	// QueueDelete deletes a queue, cancels its undelivered messages and
	// reports whether the queue existed.
	QueueDelete(ctx context.Context, name string, now time.Time) (bool, error)

	// QueueSetPaused pauses or resumes a queue, or returns ErrNotFound.
	QueueSetPaused(ctx context.Context, name string, paused bool, now time.Time) error

	// URLGroupAddEndpoints creates the group when it does not exist and
	// adds each endpoint. An endpoint whose name or URL matches an
	// existing endpoint replaces it in place: a name match takes the new
	// URL, a URL match takes the new name when one is given.
	URLGroupAddEndpoints(ctx context.Context, params *URLGroupEndpointsParams) error

	// URLGroupRemoveEndpoints removes the endpoints that match by URL or
	// name, and deletes the group when none is left. It returns ErrNotFound
	// when the group does not exist, and an ENOTFOUND *ferry.Error when an
	// endpoint matches none, in which case nothing is removed.
	URLGroupRemoveEndpoints(ctx context.Context, params *URLGroupEndpointsParams) error

	// URLGroupGet returns a URL group, or ErrNotFound.
	URLGroupGet(ctx context.Context, name string) (*ferry.URLGroup, error)

	// URLGroupList returns every URL group, by name.
	URLGroupList(ctx context.Context) ([]*ferry.URLGroup, error)

	// URLGroupDelete deletes a URL group and reports whether it existed.
	URLGroupDelete(ctx context.Context, name string) (bool, error)

	// FlowControlGet returns a flow-control key with its counts at now, or
	// ErrNotFound.
	FlowControlGet(ctx context.Context, key string, now time.Time) (*ferry.FlowControl, error)

	// FlowControlList returns the keys that contain search (every key when
	// search is empty) with their counts at now, by key.
	FlowControlList(ctx context.Context, search string, now time.Time) ([]*ferry.FlowControl, error)

	// FlowControlUpdate applies params to a key, or returns ErrNotFound.
	FlowControlUpdate(ctx context.Context, params *FlowControlUpdateParams) error

	// MessageInFlight returns the number of attempts in flight at now:
	// ACTIVE messages whose lease has not expired.
	MessageInFlight(ctx context.Context, now time.Time) (int, error)

	// MessageInsertAll stores the messages of params in one transaction,
	// each as MessageInsert would, and returns their results in order.
	MessageInsertAll(ctx context.Context, params []*MessageInsertParams) ([]*MessageInsertResult, error)
}

// QueueUpsertParams creates or changes a queue. A nil field keeps the
// queue's setting, or takes the default (parallelism 1, not paused) for a
// new queue.
type QueueUpsertParams struct {
	Name        string
	Parallelism *int
	Paused      *bool
	Now         time.Time
}

// URLGroupEndpointsParams adds endpoints to or removes them from a group.
type URLGroupEndpointsParams struct {
	Name      string
	Endpoints []ferry.Endpoint
	Now       time.Time
}

// FlowControlUpdateParams changes a flow-control key. Nil and false fields
// change nothing.
type FlowControlUpdateParams struct {
	Key string

	// Paused pauses or resumes the key.
	Paused *bool

	// PinParallelism sets and pins the parallelism.
	PinParallelism *int

	// PinRate and PinPeriod set and pin the rate; either pins both, and the
	// one not given keeps its value. Pinning a rate also resets it.
	PinRate   *int
	PinPeriod *time.Duration

	// UnpinParallelism and UnpinRate let new messages set the value again.
	UnpinParallelism bool
	UnpinRate        bool

	// ResetRate deletes the record of the attempts started so far, so the
	// rate window starts empty at Now.
	ResetRate bool

	Now time.Time
}

// GateRecheck bounds how long the claim skips a queue without a free slot
// or a flow-control key at its parallelism. Every event that frees a slot
// wakes the group at once; the bound covers slots that free without an
// event, such as an expired lease.
const GateRecheck = 5 * time.Second

// Limits of flow-control periods.
const (
	// FlowControlPeriodDefault is the period of a rate without one.
	FlowControlPeriodDefault = time.Second

	// FlowControlPeriodMax is the longest period accepted.
	FlowControlPeriodMax = 7 * 24 * time.Hour
)

// AddEndpoints returns endpoints with each of added merged in, as
// URLGroupAddEndpoints describes.
func AddEndpoints(endpoints, added []ferry.Endpoint) []ferry.Endpoint {
	out := slices.Clone(endpoints)
	for _, a := range added {
		i := -1
		if a.Name != "" {
			i = slices.IndexFunc(out, func(e ferry.Endpoint) bool { return e.Name == a.Name })
		}
		if i < 0 {
			i = slices.IndexFunc(out, func(e ferry.Endpoint) bool { return e.URL == a.URL })
		}
		if i < 0 {
			out = append(out, a)
			continue
		}

		out[i].URL = a.URL
		if a.Name != "" {
			out[i].Name = a.Name
		}
		// A name match may have moved the endpoint onto the URL of another.
		for j := len(out) - 1; j >= 0; j-- {
			if j != i && out[j].URL == a.URL {
				out = slices.Delete(out, j, j+1)
				if j < i {
					i--
				}
			}
		}
	}
	return out
}

// RemoveEndpoints returns endpoints without those that removed names by
// URL or by name. It returns an ENOTFOUND *ferry.Error naming the first of
// removed that matches no endpoint of the group.
func RemoveEndpoints(group string, endpoints, removed []ferry.Endpoint) ([]ferry.Endpoint, error) {
	out := slices.Clone(endpoints)
	for _, r := range removed {
		n := len(out)
		out = slices.DeleteFunc(out, func(e ferry.Endpoint) bool {
			return (r.URL != "" && e.URL == r.URL) || (r.Name != "" && e.Name == r.Name)
		})
		if len(out) == n {
			what := r.URL
			if what == "" {
				what = r.Name
			}
			return nil, ferry.Errorf(ferry.ENOTFOUND, "endpoint %s not found in URL group %s", what, group)
		}
	}
	return out, nil
}

// ApplyFlowControlUpdate applies params to f and reports whether the rate
// window must be emptied.
func ApplyFlowControlUpdate(f *ferry.FlowControl, params *FlowControlUpdateParams) bool {
	if params.Paused != nil {
		f.Paused = *params.Paused
	}
	if params.UnpinParallelism {
		f.PinnedParallelism = false
	}
	if params.UnpinRate {
		f.PinnedRate = false
	}
	if params.PinParallelism != nil {
		f.Parallelism = *params.PinParallelism
		f.PinnedParallelism = true
	}
	resetRate := params.ResetRate
	if params.PinRate != nil || params.PinPeriod != nil {
		if params.PinRate != nil {
			f.Rate = *params.PinRate
		}
		if params.PinPeriod != nil {
			f.Period = *params.PinPeriod
		}
		f.PinnedRate = true
		resetRate = true
	}
	return resetRate
}
