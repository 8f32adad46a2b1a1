package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ferryhq/ferry/wire"
)

// QueueList returns every queue.
func (c *Client) QueueList(ctx context.Context) ([]wire.Queue, error) {
	var queues []wire.Queue
	err := c.do(ctx, http.MethodGet, "/v2/queues", nil, nil, nil, &queues)
	return queues, err
}

// QueueGet returns a queue.
func (c *Client) QueueGet(ctx context.Context, name string) (*wire.Queue, error) {
	var q wire.Queue
	err := c.do(ctx, http.MethodGet, "/v2/queues/"+url.PathEscape(name), nil, nil, nil, &q)
	return &q, err
}

// QueueUpsert creates a queue or changes the settings that req sets, and
// returns the queue.
func (c *Client) QueueUpsert(ctx context.Context, req wire.QueueUpsertRequest) (*wire.Queue, error) {
	var q wire.Queue
	err := c.do(ctx, http.MethodPost, "/v2/queues", nil, req, nil, &q)
	return &q, err
}

// QueueDelete deletes a queue and cancels its undelivered messages.
func (c *Client) QueueDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v2/queues/"+url.PathEscape(name), nil, nil, nil, nil)
}

// QueuePause pauses a queue, or resumes it when paused is false.
func (c *Client) QueuePause(ctx context.Context, name string, paused bool) error {
	action := "resume"
	if paused {
		action = "pause"
	}
	return c.do(ctx, http.MethodPost, "/v2/queues/"+url.PathEscape(name)+"/"+action, nil, nil, nil, nil)
}

// URLGroupList returns every URL group.
func (c *Client) URLGroupList(ctx context.Context) ([]wire.URLGroup, error) {
	var groups []wire.URLGroup
	err := c.do(ctx, http.MethodGet, "/v2/topics", nil, nil, nil, &groups)
	return groups, err
}

// URLGroupGet returns a URL group.
func (c *Client) URLGroupGet(ctx context.Context, name string) (*wire.URLGroup, error) {
	var g wire.URLGroup
	err := c.do(ctx, http.MethodGet, "/v2/topics/"+url.PathEscape(name), nil, nil, nil, &g)
	return &g, err
}

// URLGroupAddEndpoints creates a URL group or adds and updates endpoints.
func (c *Client) URLGroupAddEndpoints(ctx context.Context, name string, endpoints []wire.Endpoint) error {
	return c.do(ctx, http.MethodPost, "/v2/topics/"+url.PathEscape(name)+"/endpoints", nil,
		wire.EndpointsRequest{Endpoints: endpoints}, nil, nil)
}

// URLGroupRemoveEndpoints removes endpoints by URL or name; removing the
// last one deletes the group.
func (c *Client) URLGroupRemoveEndpoints(ctx context.Context, name string, endpoints []wire.Endpoint) error {
	return c.do(ctx, http.MethodDelete, "/v2/topics/"+url.PathEscape(name)+"/endpoints", nil,
		wire.EndpointsRequest{Endpoints: endpoints}, nil, nil)
}

// URLGroupDelete deletes a URL group.
func (c *Client) URLGroupDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v2/topics/"+url.PathEscape(name), nil, nil, nil, nil)
}

// FlowControlList returns the flow-control keys that contain search, or
// every key when search is empty.
func (c *Client) FlowControlList(ctx context.Context, search string) ([]wire.FlowControl, error) {
	q := url.Values{}
	if search != "" {
		q.Set("search", search)
	}
	var list []wire.FlowControl
	err := c.do(ctx, http.MethodGet, "/v2/flowControl", q, nil, nil, &list)
	return list, err
}

// FlowControlGet returns a flow-control key.
func (c *Client) FlowControlGet(ctx context.Context, key string) (*wire.FlowControl, error) {
	var f wire.FlowControl
	err := c.do(ctx, http.MethodGet, "/v2/flowControl/"+url.PathEscape(key), nil, nil, nil, &f)
	return &f, err
}

// FlowControlAction sends POST /v2/flowControl/{key}/{action}, where
// action is pause, resume, pin, unpin or resetRate, with query.
func (c *Client) FlowControlAction(ctx context.Context, key, action string, query url.Values) error {
	return c.do(ctx, http.MethodPost, "/v2/flowControl/"+url.PathEscape(key)+"/"+action, query, nil, nil, nil)
}

// FlowControlPin pins the settings that are not zero: parallelism, rate
// and the rate's period in seconds.
func (c *Client) FlowControlPin(ctx context.Context, key string, parallelism, rate, periodSeconds int) error {
	q := url.Values{}
	for name, v := range map[string]int{"parallelism": parallelism, "rate": rate, "period": periodSeconds} {
		if v != 0 {
			q.Set(name, strconv.Itoa(v))
		}
	}
	return c.FlowControlAction(ctx, key, "pin", q)
}

// FlowControlUnpin unpins the parallelism, the rate, or both.
func (c *Client) FlowControlUnpin(ctx context.Context, key string, parallelism, rate bool) error {
	q := url.Values{"parallelism": {strconv.FormatBool(parallelism)}, "rate": {strconv.FormatBool(rate)}}
	return c.FlowControlAction(ctx, key, "unpin", q)
}

// GlobalParallelism returns the server's maximum and current number of
// attempts in flight.
func (c *Client) GlobalParallelism(ctx context.Context) (*wire.GlobalParallelism, error) {
	var g wire.GlobalParallelism
	err := c.do(ctx, http.MethodGet, "/v2/globalParallelism", nil, nil, nil, &g)
	return &g, err
}
