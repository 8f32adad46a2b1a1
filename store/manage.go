package store

import (
	"time"

	"github.com/ferryhq/ferry"
)

// MessageCancelParams selects messages to cancel.
type MessageCancelParams struct {
	// IDs cancels these messages; when set, Filter is ignored.
	IDs []string

	// Filter selects the messages to cancel when IDs is empty. An empty
	// filter selects every waiting or active message.
	Filter *MessageFilter

	// Limit caps the number of messages cancelled; zero means no cap.
	Limit int

	Now time.Time
}

// DLQListParams pages through dead-letter entries.
type DLQListParams struct {
	// IDs selects these entries; when set, Filter is ignored.
	IDs []string

	// Filter selects entries by their message and last response.
	Filter *MessageFilter

	// AfterID continues after the entry with this id (before it when
	// NewestFirst is set).
	AfterID string

	// Limit caps the number of entries; zero means 100.
	Limit int

	// NewestFirst lists the newest entries first.
	NewestFirst bool
}

// DLQDeleteParams deletes dead-letter entries.
type DLQDeleteParams struct {
	IDs    []string
	Filter *MessageFilter

	// Limit caps the number deleted; zero means no cap.
	Limit int
}

// DLQRetryParams turns a dead-letter entry into a new message.
type DLQRetryParams struct {
	DLQID string

	// Build returns the new message from the failed one. It runs inside the
	// transaction that removes the entry.
	Build func(failed *ferry.Message) (*ferry.Message, error)

	Now time.Time
}

// EventListParams filters events.
type EventListParams struct {
	// MessageID selects one message's events.
	MessageID string

	// Filter selects events by state, time and their message's fields.
	Filter *MessageFilter

	// AfterID returns only events with a larger id (oldest first), and
	// BeforeID only events with a smaller id (newest first). At most one
	// is set; with neither, NewestFirst picks the order.
	AfterID  int64
	BeforeID int64

	// NewestFirst orders events from the newest.
	NewestFirst bool

	// Limit caps the number of events; zero means 1000.
	Limit int
}

// CleanupParams bounds one retention pass.
type CleanupParams struct {
	// Before deletes rows older than this time.
	Before time.Time

	// Limit caps the rows deleted by one call, so a pass holds locks
	// briefly.
	Limit int
}
