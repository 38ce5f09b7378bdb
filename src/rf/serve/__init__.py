"""The live page: `python -m rf.serve` (make serve) streams to a browser and takes prompts mid-stream.

__main__.py   the Hydra entry point (conf/serve.yaml): address checks, the Streamer, build_server, Ctrl-C
app.py        aiohttp routes: the page, its script, the WebSocket, the downloads; one worker thread per device
live.py       one live stream: the chunk loop in the worker thread, the growing prompt list, mp4, schedule
slots.py      one stream per device: who streams, who waits (bounded queue, positions)
protocol.py   the messages in and out, the validation of each one the page sends, the error texts
page/         index.html and app.js: plain, no build step, no CDN
"""
