// Package store defines the persistence contract of Ferry. Each backend
// (store/sqlite, store/postgres) implements Store, and the conformance suite
// in store/storetest runs every behaviour against each of them.
//
// The interface is an internal seam between Ferry's services and its
// databases. It is not a stable API for third-party implementations.
package store

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ferryhq/ferry"
)

// ErrNotFound is returned by getters when no row matches.
var ErrNotFound = errors.New("store: not found")

// Store persists messages, their events, dead-letter entries and signing
// keys. Every method is safe for concurrent use. Times are stored as Unix
// milliseconds in UTC, so sub-millisecond precision is dropped.
type Store interface {
	// JobStore persists jobs; see store/job.go.
	JobStore

	// QueueStore persists queues, URL groups and flow-control keys; see
	// store/queue.go.
	QueueStore

	// MessageInsert stores a new message and its CREATED event in one
	// transaction. When DeduplicationID is set and an unexpired message with
	// the same id exists, nothing is stored and the result names the first
	// message with Deduplicated set.
	MessageInsert(ctx context.Context, params *MessageInsertParams) (*MessageInsertResult, error)

	// MessageClaim leases up to Limit due messages to Owner: messages in
	// CREATED or RETRY whose delivery time has come, and ACTIVE messages
	// whose lease expired. Each claimed message moves to ACTIVE with its
	// Attempts incremented and an ACTIVE event recorded, and is returned in
	// due order.
	MessageClaim(ctx context.Context, params *MessageClaimParams) ([]*ferry.Message, error)

	// MessageNextDueAt returns the earliest time a message becomes due, and
	// false when nothing is waiting.
	MessageNextDueAt(ctx context.Context) (time.Time, bool, error)

	// MessageMarkDelivered records a successful attempt. Like the other
	// Mark methods, it applies only while the message is ACTIVE with the
	// given Attempts, and returns false when the transition was dropped
	// because another claim or a cancel got there first.
	MessageMarkDelivered(ctx context.Context, params *MessageMarkDeliveredParams) (bool, error)

	// MessageMarkRetry records a failed attempt (ERROR event), increments
	// Retried and schedules the next attempt (RETRY event).
	MessageMarkRetry(ctx context.Context, params *MessageMarkRetryParams) (bool, error)

	// MessageMarkFailed records the final failed attempt (ERROR and FAILED
	// events) and creates the dead-letter entry, whose id it returns.
	MessageMarkFailed(ctx context.Context, params *MessageMarkFailedParams) (string, bool, error)

	// MessageReleaseLeases makes every ACTIVE message leased to owner due at
	// now. A node calls it at start, because leases held under its name
	// belong to a process of it that died.
	MessageReleaseLeases(ctx context.Context, owner string, now time.Time) (int, error)

	// MessageGet returns a message by id, or ErrNotFound.
	MessageGet(ctx context.Context, id string) (*ferry.Message, error)

	// EventList returns the events that params selects, oldest first or,
	// with NewestFirst, newest first. Each event carries its message while
	// the message is still stored.
	EventList(ctx context.Context, params *EventListParams) ([]*ferry.Event, error)

	// DLQGet returns a dead-letter entry by id, or ErrNotFound.
	DLQGet(ctx context.Context, id string) (*ferry.DLQEntry, error)

	// DLQList returns the dead-letter entries that params selects, oldest
	// first or, with NewestFirst, newest first.
	DLQList(ctx context.Context, params *DLQListParams) ([]*ferry.DLQEntry, error)

	// MessageCancel cancels waiting and active messages that params
	// selects: each moves to CANCELED (an active one first records
	// CANCEL_REQUESTED, and its attempt's result is dropped). It returns
	// the number cancelled.
	MessageCancel(ctx context.Context, params *MessageCancelParams) (int, error)

	// DLQDelete deletes the dead-letter entries that params selects and
	// returns how many it deleted.
	DLQDelete(ctx context.Context, params *DLQDeleteParams) (int, error)

	// DLQRetry removes a dead-letter entry and stores the message that
	// params.Build makes from the failed one, in one transaction. It
	// returns ErrNotFound when the entry does not exist.
	DLQRetry(ctx context.Context, params *DLQRetryParams) (*ferry.Message, error)

	// MessageDeleteFinished deletes up to Limit messages that finished
	// before Before and have no dead-letter entry.
	MessageDeleteFinished(ctx context.Context, params *CleanupParams) (int, error)

	// EventDeleteBefore deletes up to Limit events older than Before.
	EventDeleteBefore(ctx context.Context, params *CleanupParams) (int, error)

	// DLQDeleteBefore deletes up to Limit dead-letter entries created
	// before Before.
	DLQDeleteBefore(ctx context.Context, params *CleanupParams) (int, error)

	// DedupDeleteExpired deletes up to Limit deduplication ids that expired
	// before Before.
	DedupDeleteExpired(ctx context.Context, params *CleanupParams) (int, error)

	// SigningKeysRotate makes the next key current and stores newNext as
	// the next key, atomically, and returns the new pair.
	SigningKeysRotate(ctx context.Context, newNext string) (SigningKeys, error)

	// SigningKeysInit stores keys when none are stored yet and returns the
	// stored keys, so the first start generates them and later starts keep
	// them.
	SigningKeysInit(ctx context.Context, keys SigningKeys) (SigningKeys, error)

	// SigningKeysSet replaces the stored keys.
	SigningKeysSet(ctx context.Context, keys SigningKeys) error

	// SigningKeysGet returns the stored keys, or ErrNotFound.
	SigningKeysGet(ctx context.Context) (SigningKeys, error)

	// ScheduleUpsert stores s, replacing every field of an existing
	// schedule with the same id, including its paused state and history.
	ScheduleUpsert(ctx context.Context, s *ferry.Schedule) error

	// ScheduleGet returns a schedule by id, or ErrNotFound.
	ScheduleGet(ctx context.Context, id string) (*ferry.Schedule, error)

	// ScheduleList returns every schedule, oldest first.
	ScheduleList(ctx context.Context) ([]*ferry.Schedule, error)

	// ScheduleDelete deletes a schedule and reports whether it existed.
	ScheduleDelete(ctx context.Context, id string) (bool, error)

	// ScheduleSetPaused pauses or resumes a schedule and returns
	// ErrNotFound when it does not exist. Setting the state it already has
	// changes nothing.
	ScheduleSetPaused(ctx context.Context, params *ScheduleSetPausedParams) error

	// ScheduleFireDue fires up to Limit schedules that are not paused and
	// whose next fire time is at or before Now. See ScheduleFireParams.
	ScheduleFireDue(ctx context.Context, params *ScheduleFireParams) ([]*ferry.Message, error)

	// ScheduleNextFireAt returns the earliest next fire time of the
	// schedules that are not paused, and false when there is none.
	ScheduleNextFireAt(ctx context.Context) (time.Time, bool, error)

	// Close releases the store's resources.
	Close() error
}

// Waker is implemented by stores that several nodes share, so a message
// stored on one node wakes the idle dispatchers of the others. A store used
// by one process needs none: its writers wake their own dispatcher.
type Waker interface {
	// Listen calls wake each time another writer stored a message that is
	// due now or soon, and once after each reconnect, because notices sent
	// while the connection was down are lost. It blocks until ctx ends,
	// reconnecting after a lost connection, and then returns nil.
	Listen(ctx context.Context, wake func()) error
}

// SigningKeys is the pair of keys that sign deliveries. Current signs,
// Next is shared with receivers ahead of a rotation.
type SigningKeys struct {
	Current string
	Next    string
}

// MessageInsertParams describes a message to store.
type MessageInsertParams struct {
	Message *ferry.Message

	// DeduplicationWindow is how long DeduplicationID stays reserved.
	DeduplicationWindow time.Duration

	// Now is the insert time.
	Now time.Time
}

// MessageInsertResult is the outcome of MessageInsert.
type MessageInsertResult struct {
	// MessageID is the stored message, or the first message when
	// Deduplicated is true.
	MessageID string

	// Deduplicated reports that an earlier message had the same
	// deduplication id and nothing new was stored.
	Deduplicated bool
}

// MessageClaimParams selects and leases due messages.
type MessageClaimParams struct {
	Owner string
	Limit int
	Now   time.Time

	// DefaultTimeout is the attempt timeout of messages that set none.
	DefaultTimeout time.Duration

	// LeaseMargin is added to a message's attempt timeout to get its lease,
	// so the lease covers the HTTP call and the recording of its result.
	LeaseMargin time.Duration
}

// MessageMarkDeliveredParams records a 2xx response.
type MessageMarkDeliveredParams struct {
	ID             string
	Attempts       int
	Now            time.Time
	ResponseStatus int

	// Callbacks are messages to store in the same transaction, such as the
	// callback that reports this attempt.
	Callbacks []*ferry.Message
}

// AttemptResult is the outcome of one failed attempt.
type AttemptResult struct {
	// ResponseStatus is zero when no HTTP response arrived.
	ResponseStatus int
	ResponseHeader http.Header
	ResponseBody   []byte

	// Error describes the failure in words.
	Error string
}

// MessageMarkRetryParams records a failed attempt followed by a retry.
type MessageMarkRetryParams struct {
	ID       string
	Attempts int
	Now      time.Time
	Result   AttemptResult

	// NextAt is when the next attempt is due.
	NextAt time.Time

	// Callbacks are messages to store in the same transaction.
	Callbacks []*ferry.Message
}

// MessageMarkFailedParams records the final failed attempt.
type MessageMarkFailedParams struct {
	ID       string
	Attempts int
	Now      time.Time
	Result   AttemptResult

	// DLQID is the id of the dead-letter entry to create.
	DLQID string

	// Callbacks are messages to store in the same transaction, such as the
	// failure callback.
	Callbacks []*ferry.Message
}
