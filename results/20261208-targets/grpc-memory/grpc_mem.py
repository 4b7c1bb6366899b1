"""Where a floor gRPC server's memory per idle connection goes: tracemalloc, server in-process,
grpcio clients (their memory is C, not traced), N idle streams each holding its first token."""
import asyncio, socket, sys, tracemalloc, collections, resource
import uvloop
from servers.base import Context, ServerConfig, load
from clients import ClientOptions, create_stream, reader_class

N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
T = sys.argv[1] if len(sys.argv) > 1 else "grpc"

async def main():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    ctx = Context(ServerConfig(transport=T, port=port, stack="floor"))
    await ctx.start()
    ready = asyncio.Event()
    asyncio.ensure_future(load(T, "floor").serve(ctx, ready.set))
    await ready.wait()
    url = f"http://127.0.0.1:{port}"
    opts = ClientOptions(give_up_after=30)
    cls = reader_class(T)
    warm = await create_stream(T, url, tokens=20, rate=1000)
    for _ in range(5):
        await cls(url, warm["id"], lambda *a: None, None, opts).run()
    info = await create_stream(T, url, tokens=2, rate=0.001)
    got = [0]
    def on_token(*a): got[0] += 1
    snap1 = tracemalloc.take_snapshot()
    tasks = []
    for i in range(N):
        tasks.append(asyncio.ensure_future(cls(url, info["id"], on_token, None, opts).run()))
        if i % 200 == 199: await asyncio.sleep(0.05)
    while got[0] < N: await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    snap2 = tracemalloc.take_snapshot()
    flt = [tracemalloc.Filter(True, "*/servers/*"), tracemalloc.Filter(True, "*/h2/*"),
           tracemalloc.Filter(True, "*/hpack/*"), tracemalloc.Filter(True, "*/proto/*"),
           tracemalloc.Filter(True, "*/asyncio/*"), tracemalloc.Filter(True, "*/collections/*")]
    snap1, snap2 = snap1.filter_traces(flt), snap2.filter_traces(flt)
    tot = sum(d.size_diff for d in snap2.compare_to(snap1, "filename"))
    print(f"{T} floor: {N} idle streams, traced server-side Python heap {tot / N / 1024:.2f} KiB per connection")
    print("by file:")
    for d in snap2.compare_to(snap1, "filename")[:12]:
        print(f"  {d.size_diff / N:8.0f} B/conn  {d.count_diff / N:6.1f} blocks/conn  {d.traceback[0].filename.split('site-packages/')[-1].split('/main/')[-1]}")
    print("by line:")
    for d in snap2.compare_to(snap1, "lineno")[:20]:
        f = d.traceback[0]
        print(f"  {d.size_diff / N:8.0f} B/conn  {d.count_diff / N:6.1f} blocks/conn  {f.filename.split('site-packages/')[-1].split('/main/')[-1]}:{f.lineno}")
    for t in tasks: t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    tracemalloc.start(1)
    uvloop.run(main())
