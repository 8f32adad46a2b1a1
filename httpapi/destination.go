package httpapi

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/ferryhq/ferry"
)

// urlGroupName matches the names QStash allows for URL groups.
var urlGroupName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// destination is the target of a publish, taken from the raw request URI.
type destination struct {
	// URL is the destination URL with the request's query appended, minus
	// Ferry's own parameters.
	URL string

	// Config holds the upstash-* query parameters, which configure the
	// message like the headers of the same names.
	Config url.Values
}

// parseDestination extracts the destination from rawURI, the request URI
// of a route whose path is prefix followed by the destination. The
// destination is taken raw: Go's path cleaning would turn "https://" into
// "https:/". The query of the request belongs to the destination, except
// qstash_token and upstash-* parameters.
func parseDestination(rawURI, prefix string) (*destination, error) {
	path, query, _ := strings.Cut(rawURI, "?")
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return nil, ferry.Errorf(ferry.EINVALID, "invalid request path %q: expected %s{destination}", truncate(path), prefix)
	}
	raw := path[len(prefix):]

	// A fully percent-encoded destination is decoded once.
	lower := strings.ToLower(raw)
	if strings.HasPrefix(lower, "http%3a") || strings.HasPrefix(lower, "https%3a") {
		decoded, err := url.PathUnescape(raw)
		if err != nil {
			return nil, ferry.Errorf(ferry.EINVALID, "invalid destination %q: bad percent-encoding: %v", truncate(raw), err)
		}
		raw = decoded
	}

	kept, config := splitQuery(query)
	dest := &destination{URL: appendQuery(raw, kept), Config: config}

	if err := validateDestination(raw, dest.URL); err != nil {
		return nil, err
	}
	return dest, nil
}

// appendQuery adds query to rawURL, after the query that rawURL already has
// and before its fragment.
func appendQuery(rawURL, query string) string {
	if query == "" {
		return rawURL
	}

	base, fragment, hasFragment := strings.Cut(rawURL, "#")
	switch {
	case !strings.Contains(base, "?"):
		base += "?" + query
	case strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&"):
		base += query
	default:
		base += "&" + query
	}

	if hasFragment {
		base += "#" + fragment
	}
	return base
}

// splitQuery separates Ferry's parameters from the destination's. Kept
// parameters stay in their original order and encoding.
func splitQuery(query string) (kept string, config url.Values) {
	config = url.Values{}
	if query == "" {
		return "", config
	}
	var keep []string
	for _, pair := range strings.Split(query, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			keep = append(keep, pair)
			continue
		}
		lowerKey := strings.ToLower(key)
		switch {
		case lowerKey == "qstash_token":
		case strings.HasPrefix(lowerKey, "upstash-"):
			value, err := url.QueryUnescape(rawValue)
			if err != nil {
				value = rawValue
			}
			config.Add(key, value)
		default:
			keep = append(keep, pair)
		}
	}
	return strings.Join(keep, "&"), config
}

// validateDestination checks that dest is an absolute http or https URL.
// raw is the destination before the query was appended, for messages.
func validateDestination(raw, dest string) error {
	if raw == "" {
		return ferry.Errorf(ferry.EINVALID, "a non-empty destination must be provided: publish to /v2/publish/https://your.app/path")
	}
	lower := strings.ToLower(raw)
	if strings.HasPrefix(lower, "api/") {
		return ferry.Errorf(ferry.EINVALID, "invalid destination %q: api destinations are not supported; use an http:// or https:// URL", truncate(raw))
	}
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		if urlGroupName.MatchString(raw) {
			return ferry.Errorf(ferry.ENOTFOUND, "topic %s not found: add endpoints with POST /v2/topics/{name}/endpoints, or use an http:// or https:// URL", truncate(raw))
		}
		return ferry.Errorf(ferry.EINVALID, "invalid destination %q: must be an http:// or https:// URL such as https://your.app/path", truncate(raw))
	}

	u, err := url.Parse(dest)
	if err != nil {
		return ferry.Errorf(ferry.EINVALID, "invalid destination %q: %s", truncate(dest), truncate(unwrapParseError(err).Error()))
	}
	if u.Host == "" || u.Hostname() == "" {
		return ferry.Errorf(ferry.EINVALID, "invalid destination %q: the URL has no host; use a form such as https://your.app/path", truncate(dest))
	}
	return nil
}

func unwrapParseError(err error) error {
	if u, ok := err.(*url.Error); ok {
		return u.Err
	}
	return err
}

// maxEchoedBytes is the longest client value that an error message repeats
// in full.
const maxEchoedBytes = 200

// truncate shortens a client value echoed in an error message.
func truncate(s string) string {
	if len(s) <= maxEchoedBytes {
		return s
	}
	return s[:maxEchoedBytes] + "..."
}
