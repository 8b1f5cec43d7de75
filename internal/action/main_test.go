package action

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine outlives them (a Run not
// stopped, a journal not closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
