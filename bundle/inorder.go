package bundle

import (
	"runtime"
	"sync"
)

// Exporting and verifying share one shape of pipeline: one goroutine
// produces work in file order (rows read back in chain order, records
// read from a file), every core processes it (encoding, decoding and
// hashing rows), and the results are consumed in the order the work was
// produced (written to the data file, checked against the chain). inOrder
// is that pipeline.

// inOrder runs produce on a goroutine of its own, which hands jobs to
// send in order; processes each job on one of GOMAXPROCS workers, each
// with its own process function from newProcess (so it may keep scratch
// state); and calls consume, on the calling goroutine, with each job once
// processed, in the order they were sent. It returns once produce has
// returned and every job it sent is consumed. At most about three jobs a
// worker are in flight, so a slow consumer holds the producer back.
func inOrder[J any](produce func(send func(J)), newProcess func() func(J), consume func(J)) {
	type slot struct {
		job  J
		done chan struct{}
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	work := make(chan *slot, workers)
	order := make(chan *slot, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			process := newProcess()
			for s := range work {
				process(s.job)
				close(s.done)
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(work)
		produce(func(j J) {
			s := &slot{job: j, done: make(chan struct{})}
			work <- s
			order <- s
		})
	}()
	for s := range order {
		<-s.done
		consume(s.job)
	}
	wg.Wait()
}
