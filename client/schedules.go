package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ferryhq/ferry/wire"
)

// ScheduleCreate creates a schedule that publishes body to destination at
// every tick of cron, and returns its id. header carries the other
// settings as request headers, such as Content-Type, Upstash-Schedule-Id
// (which replaces the schedule with that id), Upstash-Retries or
// Upstash-Forward-<Name>.
func (c *Client) ScheduleCreate(ctx context.Context, destination, cron string, body []byte, header http.Header) (string, error) {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Upstash-Cron", cron)

	var r wire.ScheduleCreateResponse
	// The destination goes into the path unescaped, as the QStash SDKs send
	// it, because the server takes it from the raw request URI.
	err := c.do(ctx, http.MethodPost, "/v2/schedules/"+destination, nil, rawBody(body), h, &r)
	return r.ScheduleID, err
}

// Schedules returns every schedule, oldest first.
func (c *Client) Schedules(ctx context.Context) ([]wire.Schedule, error) {
	var list []wire.Schedule
	err := c.do(ctx, http.MethodGet, "/v2/schedules", nil, nil, nil, &list)
	return list, err
}

// ScheduleGet returns one schedule.
func (c *Client) ScheduleGet(ctx context.Context, id string) (*wire.Schedule, error) {
	var s wire.Schedule
	err := c.do(ctx, http.MethodGet, "/v2/schedules/"+url.PathEscape(id), nil, nil, nil, &s)
	return &s, err
}

// ScheduleDelete deletes a schedule. Deleting one that does not exist
// succeeds.
func (c *Client) ScheduleDelete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v2/schedules/"+url.PathEscape(id), nil, nil, nil, nil)
}

// SchedulePause stops a schedule from firing until it is resumed.
func (c *Client) SchedulePause(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPatch, "/v2/schedules/"+url.PathEscape(id)+"/pause", nil, nil, nil, nil)
}

// ScheduleResume resumes a paused schedule at its first tick after now.
func (c *Client) ScheduleResume(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPatch, "/v2/schedules/"+url.PathEscape(id)+"/resume", nil, nil, nil, nil)
}
