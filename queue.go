package ferry

import (
	"regexp"
	"time"
)

// groupName matches the names QStash allows for queues and URL groups:
// letters, digits, hyphens, underscores and periods.
var groupName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// MaxGroupName is the longest queue or URL group name accepted.
const MaxGroupName = 256

// ValidGroupName reports whether name is a valid queue or URL group name.
func ValidGroupName(name string) bool {
	return len(name) <= MaxGroupName && groupName.MatchString(name)
}

// Queue delivers its messages in the order they were enqueued, at most
// Parallelism at a time.
type Queue struct {
	Name string

	// Parallelism is the maximum number of messages in flight. A message
	// stays in flight from its first attempt until it and every callback
	// message reporting on it are delivered, failed or cancelled.
	Parallelism int

	// Paused queues accept messages but start no attempts.
	Paused bool

	CreatedAt time.Time
	UpdatedAt time.Time

	// Lag is the number of messages not yet delivered, failed or
	// cancelled. Readers fill it in.
	Lag int
}

// URLGroup fans a publish out to each of its endpoints. QStash's API calls
// it a topic.
type URLGroup struct {
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time

	// Endpoints are in the order they were added.
	Endpoints []Endpoint
}

// Endpoint is one destination of a URL group.
type Endpoint struct {
	// Name is optional and unique within the group.
	Name string

	// URL is unique within the group.
	URL string
}

// FlowControl limits the deliveries of all messages that carry one
// Upstash-Flow-Control-Key, whatever their destination.
type FlowControl struct {
	Key string

	// Parallelism is the maximum number of attempts in flight; zero means
	// no limit.
	Parallelism int

	// Rate is the maximum number of attempts started in any window of
	// length Period; zero means no limit.
	Rate   int
	Period time.Duration

	// Paused keys start no attempts.
	Paused bool

	// PinnedParallelism and PinnedRate keep Parallelism, and Rate with
	// Period, from being replaced by the values of new messages.
	PinnedParallelism bool
	PinnedRate        bool

	CreatedAt time.Time
	UpdatedAt time.Time

	// The fields below are read from the messages and the starts log at the
	// time of the read.

	// WaitListSize is the number of messages waiting for an attempt.
	WaitListSize int

	// InFlight is the number of attempts in flight.
	InFlight int

	// RateCount is the number of attempts started in the window of length
	// Period that ends now.
	RateCount int

	// RateWindowStart is the start of the oldest attempt that RateCount
	// counts, or the read time when it counts none.
	RateWindowStart time.Time
}
