package postgres_test

import (
	"testing"

	"github.com/ferryhq/ferry/store/storetest"
)

// TestScheduleFireTwoNodes runs schedulers on two stores of one schema, as
// two nodes do.
func TestScheduleFireTwoNodes(t *testing.T) {
	dsn := newSchema(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	storetest.ScheduleFireShared(t, a, b)
}
