package httpapi

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// listValues returns the values of the query parameters names, accepting
// both repeated keys (a=1&a=2) and comma-separated values (a=1,2), as the
// QStash SDKs send either.
func listValues(q url.Values, names ...string) []string {
	var out []string
	for _, name := range names {
		for _, v := range q[name] {
			for _, part := range strings.Split(v, ",") {
				if p := strings.TrimSpace(part); p != "" {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// parseMillis reads a Unix-milliseconds parameter; absent means zero.
func parseMillis(q url.Values, name string) (time.Time, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return time.Time{}, ferry.Errorf(ferry.EINVALID, "invalid %s parameter %q: expected Unix time in milliseconds", name, truncate(v))
	}
	return time.UnixMilli(ms), nil
}

// parseCount reads the count parameter: def when absent, else 1 to max.
func parseCount(q url.Values, def, max int) (int, error) {
	v := strings.TrimSpace(q.Get("count"))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, ferry.Errorf(ferry.EINVALID, "invalid count parameter %q: expected an integer from 1 to %d", truncate(v), max)
	}
	return n, nil
}

// parseFilter reads the filter parameters shared by messages, the
// dead-letter queue and events. Unknown parameters are ignored, as QStash
// does (older SDKs send urlGroup and api).
func parseFilter(q url.Values) (*store.MessageFilter, error) {
	f := &store.MessageFilter{
		MessageIDs:      listValues(q, "messageIds", "messageId"),
		URLs:            listValues(q, "url"),
		Hosts:           listValues(q, "host"),
		Paths:           listValues(q, "path"),
		TopicNames:      listValues(q, "topicName"),
		QueueNames:      listValues(q, "queueName"),
		ScheduleIDs:     listValues(q, "scheduleId"),
		Labels:          listValues(q, "label"),
		CallerIPs:       listValues(q, "callerIp", "callerIP"),
		FlowControlKeys: listValues(q, "flowControlKey"),
	}

	for _, s := range listValues(q, "state") {
		states, err := parseState(s)
		if err != nil {
			return nil, err
		}
		f.States = append(f.States, states...)
	}

	for _, s := range listValues(q, "responseStatus") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 999 {
			return nil, ferry.Errorf(ferry.EINVALID, "invalid responseStatus parameter %q: expected an HTTP status code such as 500", truncate(s))
		}
		f.ResponseStatuses = append(f.ResponseStatuses, n)
	}

	var err error
	if f.From, err = parseMillis(q, "fromDate"); err != nil {
		return nil, err
	}
	if f.To, err = parseMillis(q, "toDate"); err != nil {
		return nil, err
	}
	return f, nil
}

// parseState reads a state filter. IN_PROGRESS stands for the states of a
// message still being worked on, and CANCELLED is accepted for CANCELED.
func parseState(s string) ([]ferry.MessageState, error) {
	upper := strings.ToUpper(s)
	switch upper {
	case "IN_PROGRESS":
		return []ferry.MessageState{ferry.MessageStateActive, ferry.MessageStateRetry, ferry.MessageStateError}, nil
	case "CANCELLED":
		return []ferry.MessageState{ferry.MessageStateCanceled}, nil
	}
	for _, st := range ferry.MessageStates() {
		if string(st) == upper {
			return []ferry.MessageState{st}, nil
		}
	}
	names := make([]string, 0, 9)
	for _, st := range ferry.MessageStates() {
		names = append(names, string(st))
	}
	names = append(names, "IN_PROGRESS")
	return nil, ferry.Errorf(ferry.EINVALID, "invalid state parameter %q: expected one of %s", truncate(s), strings.Join(names, ", "))
}

// parseOrder reads the order parameter and reports whether the newest
// come first, which is the default.
func parseOrder(q url.Values) (bool, error) {
	switch v := strings.TrimSpace(q.Get("order")); strings.ToLower(v) {
	case "", "latestfirst":
		return true, nil
	case "earliestfirst":
		return false, nil
	default:
		return false, ferry.Errorf(ferry.EINVALID, "invalid order parameter %q: expected latestFirst or earliestFirst", truncate(v))
	}
}

func invalidCursor(c string) error {
	return ferry.Errorf(ferry.EINVALID, "invalid cursor parameter %q: pass the cursor of the previous page unchanged", truncate(c))
}
