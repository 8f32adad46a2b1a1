package wire

import (
	"time"

	"github.com/ferryhq/ferry"
)

// Queue is a queue as GET /v2/queues returns it. The Python SDK requires
// every field.
type Queue struct {
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	CreatedAt   int64  `json:"createdAt"`
	UpdatedAt   int64  `json:"updatedAt"`
	Lag         int    `json:"lag"`
	Paused      bool   `json:"paused"`
}

// QueueUpsertRequest is the body of POST /v2/queues. Absent fields keep
// the queue's settings, or take the defaults for a new queue.
type QueueUpsertRequest struct {
	QueueName   string `json:"queueName"`
	Parallelism *int   `json:"parallelism,omitempty"`
	Paused      *bool  `json:"paused,omitempty"`
}

// NewQueue converts a queue to its wire form.
func NewQueue(q *ferry.Queue) Queue {
	return Queue{
		Name:        q.Name,
		Parallelism: q.Parallelism,
		CreatedAt:   q.CreatedAt.UnixMilli(),
		UpdatedAt:   q.UpdatedAt.UnixMilli(),
		Lag:         q.Lag,
		Paused:      q.Paused,
	}
}

// URLGroup is a URL group as GET /v2/topics returns it.
type URLGroup struct {
	Name      string     `json:"name"`
	CreatedAt int64      `json:"createdAt"`
	UpdatedAt int64      `json:"updatedAt"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint of a URL group.
type Endpoint struct {
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"`
}

// EndpointsRequest is the body of POST and DELETE
// /v2/topics/{name}/endpoints.
type EndpointsRequest struct {
	Endpoints []Endpoint `json:"endpoints"`
}

// NewURLGroup converts a URL group to its wire form.
func NewURLGroup(g *ferry.URLGroup) URLGroup {
	w := URLGroup{
		Name:      g.Name,
		CreatedAt: g.CreatedAt.UnixMilli(),
		UpdatedAt: g.UpdatedAt.UnixMilli(),
		Endpoints: make([]Endpoint, len(g.Endpoints)),
	}
	for i, e := range g.Endpoints {
		w.Endpoints[i] = Endpoint{Name: e.Name, URL: e.URL}
	}
	return w
}

// FlowControl is a flow-control key as GET /v2/flowControl returns it.
// RatePeriod is in seconds and RatePeriodStart in Unix seconds.
type FlowControl struct {
	FlowControlKey      string `json:"flowControlKey"`
	WaitListSize        int    `json:"waitListSize"`
	ParallelismMax      int    `json:"parallelismMax"`
	ParallelismCount    int    `json:"parallelismCount"`
	RateMax             int    `json:"rateMax"`
	RateCount           int    `json:"rateCount"`
	RatePeriod          int64  `json:"ratePeriod"`
	RatePeriodStart     int64  `json:"ratePeriodStart"`
	IsPaused            bool   `json:"isPaused"`
	IsPinnedParallelism bool   `json:"isPinnedParallelism"`
	IsPinnedRate        bool   `json:"isPinnedRate"`
}

// NewFlowControl converts a flow-control key to its wire form.
func NewFlowControl(f *ferry.FlowControl) FlowControl {
	return FlowControl{
		FlowControlKey:      f.Key,
		WaitListSize:        f.WaitListSize,
		ParallelismMax:      f.Parallelism,
		ParallelismCount:    f.InFlight,
		RateMax:             f.Rate,
		RateCount:           f.RateCount,
		RatePeriod:          int64(f.Period / time.Second),
		RatePeriodStart:     f.RateWindowStart.Unix(),
		IsPaused:            f.Paused,
		IsPinnedParallelism: f.PinnedParallelism,
		IsPinnedRate:        f.PinnedRate,
	}
}

// GlobalParallelism is the response to GET /v2/globalParallelism.
type GlobalParallelism struct {
	ParallelismMax   int `json:"parallelismMax"`
	ParallelismCount int `json:"parallelismCount"`
}
