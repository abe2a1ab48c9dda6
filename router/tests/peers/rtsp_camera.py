#!/usr/bin/python3
"""An IP camera stand-in: gst-rtsp-server serving a live test stream at rtsp://127.0.0.1:PORT/test.

Usage: rtsp_camera.py PORT CODEC [USER PASS]
  CODEC: h264 | h264-4m | h265 | h264+pcma | h264+opus | rtp:UDPPORT
    rtp:UDPPORT serves H.264 that arrives as RTP on that UDP port (ffmpeg -f rtp), repacketized: the RTSP-serving
    benchmark's gst-rtsp-server side, fed the same clip as the router.
  USER PASS: require Digest authentication with these credentials.
Prints "ready" once listening, and "client connected" / "client disconnected" per RTSP connection, flushed,
so tests can wait on them.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = {
    "h264": "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph264pay name=pay0 pt=96",
    # A 4 Mbit/s stream for the RTSP load benchmark (720p keeps the one shared encoder cheap).
    "h264-4m": "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=4000 vbv-buf-capacity=1000 "
    "! rtph264pay name=pay0 pt=96",
    "h265": "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph265pay name=pay0 pt=96",
}
AUDIO = {
    "pcma": "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
    "opus": "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay name=pay1 pt=97",
}


def main():
    port, codec = sys.argv[1], sys.argv[2]
    video, _, audio = codec.partition("+")
    if video.startswith("rtp:"):
        caps = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"
        VIDEO[video] = (f"udpsrc port={video[4:]} caps=\"{caps}\" ! rtph264depay "
                        "! rtph264pay name=pay0 pt=96 config-interval=-1")
    launch = VIDEO[video] + (" " + AUDIO[audio] if audio else "")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {launch} )")
    factory.set_shared(True)
    if len(sys.argv) >= 5:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_digest(sys.argv[3], sys.argv[4], token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("user")
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/test", factory)

    def on_client(_server, client):
        print("client connected", flush=True)
        client.connect("closed", lambda _c: print("client disconnected", flush=True))

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        print(f"cannot listen on {port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
