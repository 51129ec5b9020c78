package eventhubs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// With balance processor the SDK's Processor decides which partitions this
// collector owns, through ownership records in a Blob container, and hands
// each owned partition over as a ProcessorPartitionClient. The source reads
// it like a static partition, checkpoints after every acknowledged batch
// (so the next owner starts where the store's data ends), and drops any
// event at or below the positions it knows to be stored. A nack closes the
// partition client; the Processor hands the partition out again from the
// checkpoint on its next load-balancing round.

// newCheckpointStore builds the Blob checkpoint store.
func (s *Source) newCheckpointStore() (*checkpoints.BlobStore, error) {
	cc := s.cfg.Checkpoints
	var (
		client *container.Client
		err    error
	)
	switch {
	case cc.ConnectionString != "":
		client, err = container.NewClientFromConnectionString(cc.ConnectionString, cc.Container, nil)
	default:
		u, perr := url.Parse(cc.ContainerURL)
		if perr != nil {
			return nil, errors.New("checkpoints.container_url: not a URL")
		}
		if u.RawQuery != "" {
			client, err = container.NewClientWithNoCredential(cc.ContainerURL, nil)
		} else {
			cred, cerr := s.credential()
			if cerr != nil {
				return nil, cerr
			}
			client, err = container.NewClient(cc.ContainerURL, cred, nil)
		}
	}
	if err != nil {
		return nil, err
	}
	return checkpoints.NewBlobStore(client, nil)
}

// runProcessor runs Processors until ctx ends, starting a new one (with
// backoff) when one fails, and reads every partition it hands out.
func (s *Source) runProcessor(ctx context.Context, client *azeventhubs.ConsumerClient, store *checkpoints.BlobStore, ids []string, out chan<- *delivery) {
	defer s.wg.Done()
	opts := &azeventhubs.ProcessorOptions{
		LoadBalancingStrategy:       azeventhubs.ProcessorStrategyBalanced,
		UpdateInterval:              s.cfg.LoadBalancingInterval,
		PartitionExpirationDuration: s.cfg.OwnershipExpiration,
		Prefetch:                    s.cfg.Prefetch,
		StartPositions: azeventhubs.StartPositions{
			Default:      s.startPosition(position{}),
			PerPartition: map[string]azeventhubs.StartPosition{},
		},
	}
	for _, id := range ids {
		// Used only while the partition has no checkpoint yet.
		if seq, ok := s.stored[s.Stream(id)]; ok {
			opts.StartPositions.PerPartition[id] = s.startPosition(position{after: seq, valid: true})
		}
	}
	backoff := s.cfg.RetryDelay
	for ctx.Err() == nil {
		proc, err := azeventhubs.NewProcessor(client, store, opts)
		if err == nil {
			dctx, cancel := context.WithCancel(ctx)
			s.wg.Add(1)
			go s.dispatch(dctx, proc, out)
			err = proc.Run(ctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			backoff = s.cfg.RetryDelay
		}
		if err == nil {
			err = errors.New("processor stopped")
		}
		s.log.Warn("event hubs processor failed, restarting", "err", s.redact.text(err.Error()), "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxRetryDelay)
	}
}

// dispatch starts a reader for every partition the Processor assigns.
func (s *Source) dispatch(ctx context.Context, proc *azeventhubs.Processor, out chan<- *delivery) {
	defer s.wg.Done()
	for {
		ppc := proc.NextPartitionClient(ctx)
		if ppc == nil {
			return
		}
		s.wg.Add(1)
		go s.readOwned(ctx, ppc, out)
	}
}

// readOwned reads one owned partition until ownership is lost, an error
// occurs or a nack rewinds it; closing the client lets the Processor hand
// the partition out again (from its checkpoint) if this collector still
// owns it.
func (s *Source) readOwned(ctx context.Context, ppc *azeventhubs.ProcessorPartitionClient, out chan<- *delivery) {
	defer s.wg.Done()
	s.mu.Lock()
	p := s.partitionLocked(ppc.PartitionID())
	gen := p.gen
	p.reading, p.owner, p.pendingCP = true, ppc, nil
	s.mu.Unlock()
	select { // a rewind requested before this claim is already applied
	case <-p.restart:
	default:
	}
	log := s.log.With("partition", p.id)
	log.Info("event hubs partition claimed")
	_, err := s.receive(ctx, ppc, ppc, p, gen, out)
	var ehErr *azeventhubs.Error
	lost := errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeOwnershipLost

	// End the claim: later acknowledgements of its batches no longer
	// checkpoint, and a checkpoint still pending is written unless another
	// collector owns the partition now.
	s.mu.Lock()
	pending := p.pendingCP
	p.reading, p.owner, p.pendingCP = false, nil, nil
	s.mu.Unlock()
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if !lost {
		s.checkpoint(closeCtx, pending)
	}
	_ = ppc.Close(closeCtx)
	switch {
	case ctx.Err() != nil:
	case lost:
		log.Info("event hubs partition taken over by another collector")
	case err != nil:
		log.Warn("event hubs partition failed; the processor will reassign it", "err", s.redact.text(fmt.Sprint(err)))
	}
}
