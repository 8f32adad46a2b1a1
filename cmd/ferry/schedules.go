package main

import (
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/wire"
)

func newSchedulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Create, list, pause, resume and delete cron schedules",
	}
	cmd.AddCommand(newSchedulesListCommand(), newSchedulesGetCommand(), newSchedulesCreateCommand(),
		newSchedulesDeleteCommand(), newSchedulesPauseCommand(true), newSchedulesPauseCommand(false))
	return cmd
}

func newSchedulesListCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every schedule, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Schedules(cmd.Context())
			if err != nil {
				return err
			}
			if list == nil {
				list = []wire.Schedule{}
			}
			return flags.print(cmd.OutOrStdout(), list, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "SCHEDULE ID\tCRON\tDESTINATION\tPAUSED\tNEXT\tLAST")
				for _, s := range list {
					fmt.Fprintf(t, "%s\t%s\t%s\t%t\t%s\t%s\n", s.ScheduleID, s.Cron, s.Destination, s.IsPaused,
						formatMillis(s.NextScheduleTime), formatMillis(s.LastScheduleTime))
				}
				t.Flush()
			})
		},
	}
	flags.register(cmd)
	return cmd
}

func newSchedulesGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get SCHEDULE_ID",
		Short: "Show a schedule",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			s, err := c.ScheduleGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), s, func(w io.Writer) { printSchedule(w, s) })
		},
	}
	flags.register(cmd)
	return cmd
}

func printSchedule(w io.Writer, s *wire.Schedule) {
	t := table(w)
	fmt.Fprintf(t, "id\t%s\n", s.ScheduleID)
	fmt.Fprintf(t, "cron\t%s\n", s.Cron)
	fmt.Fprintf(t, "destination\t%s\n", s.Destination)
	fmt.Fprintf(t, "method\t%s\n", s.Method)
	fmt.Fprintf(t, "paused\t%t\n", s.IsPaused)
	fmt.Fprintf(t, "created\t%s\n", formatMillis(s.CreatedAt))
	fmt.Fprintf(t, "next\t%s\n", formatMillis(s.NextScheduleTime))
	fmt.Fprintf(t, "last\t%s\n", formatMillis(s.LastScheduleTime))

	fmt.Fprintf(t, "retries\t%d\n", s.Retries)
	if s.Delay > 0 {
		fmt.Fprintf(t, "delay\t%ds\n", s.Delay)
	}
	if s.Timeout > 0 {
		fmt.Fprintf(t, "timeout\t%ds\n", s.Timeout)
	}
	if s.RetryDelayExpression != "" {
		fmt.Fprintf(t, "retry delay\t%s\n", s.RetryDelayExpression)
	}
	if s.QueueName != "" {
		fmt.Fprintf(t, "queue\t%s\n", s.QueueName)
	}
	if s.Callback != "" {
		fmt.Fprintf(t, "callback\t%s\n", s.Callback)
	}
	if s.FailureCallback != "" {
		fmt.Fprintf(t, "failure callback\t%s\n", s.FailureCallback)
	}
	if len(s.Labels) > 0 {
		fmt.Fprintf(t, "labels\t%s\n", strings.Join(s.Labels, ", "))
	}

	names := make([]string, 0, len(s.Header))
	for name := range s.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(t, "header\t%s: %s\n", name, strings.Join(s.Header[name], ", "))
	}

	ids := make([]string, 0, len(s.LastScheduleStates))
	for id := range s.LastScheduleStates {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(t, "last message\t%s %s\n", id, s.LastScheduleStates[id])
	}

	if s.Error != "" {
		fmt.Fprintf(t, "error\t%s\n", s.Error)
	}
	switch {
	case s.Body != "":
		fmt.Fprintf(t, "body\t%s\n", truncateText(s.Body, 400))
	case s.BodyBase64 != "":
		fmt.Fprintf(t, "body (base64)\t%s\n", truncateText(s.BodyBase64, 400))
	}
	t.Flush()
}

// scheduleCreateFlags are the settings of schedules create.
type scheduleCreateFlags struct {
	cron, id, body, bodyFile, contentType, method string
	delay, timeout, retryDelay, callback          string
	failureCallback, queue                        string
	retries                                       int
	labels, forward, headers                      []string
}

func (f *scheduleCreateFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.cron, "cron", "", `cron expression (required): 5 fields in UTC, such as "*/5 * * * *", an optional "CRON_TZ=<zone> " prefix, or a macro such as @daily`)
	fs.StringVar(&f.id, "id", "", "schedule id (letters, digits, -, _ and .); an existing schedule with this id is replaced")
	fs.StringVar(&f.body, "body", "", "message body")
	fs.StringVar(&f.bodyFile, "body-file", "", `file whose content is the message body ("-" reads standard input)`)
	fs.StringVar(&f.contentType, "content-type", "", "Content-Type of the message body")
	fs.StringVar(&f.method, "method", "", "HTTP method of each delivery (default POST)")
	fs.StringVar(&f.delay, "delay", "", "delay of each message after its tick, such as 30s or 1h")
	fs.IntVar(&f.retries, "retries", 0, "retries after a failed delivery (default: the server's default)")
	fs.StringVar(&f.timeout, "timeout", "", "HTTP deadline of each delivery attempt, such as 30s")
	fs.StringVar(&f.retryDelay, "retry-delay", "", `retry delay expression in milliseconds, such as "1000 * pow(2, retried)"`)
	fs.StringVar(&f.callback, "callback", "", "URL called with the outcome of every attempt")
	fs.StringVar(&f.failureCallback, "failure-callback", "", "URL called once after the final failure")
	fs.StringVar(&f.queue, "queue", "", "queue name stored on each message")
	fs.StringSliceVar(&f.labels, "label", nil, "label of each message (repeatable)")
	fs.StringArrayVar(&f.forward, "forward", nil, `header forwarded to the destination, as "Name: value" (repeatable)`)
	fs.StringArrayVar(&f.headers, "header", nil, `request header sent as is, such as "Upstash-Callback-Retries: 2" (repeatable)`)
}

// request returns the request headers and body the flags describe.
func (f *scheduleCreateFlags) request(cmd *cobra.Command) (http.Header, []byte, error) {
	if strings.TrimSpace(f.cron) == "" {
		return nil, nil, fmt.Errorf(`missing --cron: pass a cron expression such as --cron "*/5 * * * *"`)
	}
	if f.body != "" && f.bodyFile != "" {
		return nil, nil, fmt.Errorf("--body and --body-file both set: pass only one")
	}

	h := http.Header{}
	for _, raw := range f.headers {
		name, value, err := splitHeader("--header", raw)
		if err != nil {
			return nil, nil, err
		}
		h.Add(name, value)
	}
	for _, raw := range f.forward {
		name, value, err := splitHeader("--forward", raw)
		if err != nil {
			return nil, nil, err
		}
		h.Add("Upstash-Forward-"+name, value)
	}
	settings := []struct{ name, value string }{
		{"Upstash-Schedule-Id", f.id},
		{"Content-Type", f.contentType},
		{"Upstash-Method", f.method},
		{"Upstash-Delay", f.delay},
		{"Upstash-Timeout", f.timeout},
		{"Upstash-Retry-Delay", f.retryDelay},
		{"Upstash-Callback", f.callback},
		{"Upstash-Failure-Callback", f.failureCallback},
		{"Upstash-Queue-Name", f.queue},
		{"Upstash-Label", strings.Join(splitComma(f.labels), ",")},
	}
	for _, s := range settings {
		if s.value != "" {
			h.Set(s.name, s.value)
		}
	}
	if cmd.Flags().Changed("retries") {
		h.Set("Upstash-Retries", strconv.Itoa(f.retries))
	}

	body := []byte(f.body)
	switch f.bodyFile {
	case "":
	case "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, nil, fmt.Errorf("read the body from standard input: %w", err)
		}
		body = b
	default:
		b, err := os.ReadFile(f.bodyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --body-file: %w", err)
		}
		body = b
	}
	return h, body, nil
}

// splitHeader splits a "Name: value" flag value.
func splitHeader(flag, raw string) (string, string, error) {
	name, value, ok := strings.Cut(raw, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", fmt.Errorf("invalid %s %q: use the form \"Name: value\"", flag, raw)
	}
	return textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value), nil
}

func newSchedulesCreateCommand() *cobra.Command {
	var flags clientFlags
	var create scheduleCreateFlags
	cmd := &cobra.Command{
		Use:   "create DESTINATION --cron EXPRESSION",
		Short: "Create or replace a schedule that publishes to DESTINATION at every cron tick",
		Long: `Create a schedule that publishes a message to DESTINATION, an http:// or
https:// URL, at every tick of --cron. With --id, a schedule that already has
that id is replaced as a whole: settings not given again are dropped.`,
		Example: `  ferry schedules create https://example.com/report --cron "0 6 * * 1-5" \
    --body '{"kind":"daily"}' --content-type application/json --retries 5`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			header, body, err := create.request(cmd)
			if err != nil {
				return err
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			id, err := c.ScheduleCreate(cmd.Context(), args[0], strings.TrimSpace(create.cron), body, header)
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), wire.ScheduleCreateResponse{ScheduleID: id}, func(w io.Writer) {
				fmt.Fprintln(w, id)
			})
		},
	}
	create.register(cmd)
	flags.register(cmd)
	return cmd
}

// scheduleResult is the --json output of delete, pause and resume.
type scheduleResult struct {
	ScheduleID string `json:"scheduleId"`
	Deleted    bool   `json:"deleted,omitempty"`
	IsPaused   *bool  `json:"isPaused,omitempty"`
}

func newSchedulesDeleteCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "delete SCHEDULE_ID...",
		Short: "Delete schedules; messages they already sent stay",
		Long: `Delete schedules. Deleting a schedule that does not exist succeeds, so the
command can be repeated. Messages that a schedule already triggered stay.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			results := make([]scheduleResult, 0, len(args))
			for _, id := range args {
				if err := c.ScheduleDelete(cmd.Context(), id); err != nil {
					return fmt.Errorf("delete schedule %s: %w", id, err)
				}
				results = append(results, scheduleResult{ScheduleID: id, Deleted: true})
			}
			return flags.print(cmd.OutOrStdout(), results, func(w io.Writer) {
				fmt.Fprintf(w, "deleted %d schedule(s)\n", len(results))
			})
		},
	}
	flags.register(cmd)
	return cmd
}

// newSchedulesPauseCommand returns schedules pause, or schedules resume
// when pause is false.
func newSchedulesPauseCommand(pause bool) *cobra.Command {
	var flags clientFlags
	use, short := "resume SCHEDULE_ID", "Resume a paused schedule at its first tick from now"
	if pause {
		use, short = "pause SCHEDULE_ID", "Stop a schedule from firing until it is resumed"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			id := args[0]
			if pause {
				err = c.SchedulePause(cmd.Context(), id)
			} else {
				err = c.ScheduleResume(cmd.Context(), id)
			}
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), scheduleResult{ScheduleID: id, IsPaused: &pause}, func(w io.Writer) {
				if pause {
					fmt.Fprintf(w, "paused %s\n", id)
				} else {
					fmt.Fprintf(w, "resumed %s\n", id)
				}
			})
		},
	}
	flags.register(cmd)
	return cmd
}
