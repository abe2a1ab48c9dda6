#!/usr/bin/python3
"""Publishes H.264 from GStreamer's webrtcbin to a WHIP endpoint for a number of seconds.

GStreamer 1.22 (Debian bookworm) has no whipsink, so this is the WHIP client: create the offer, wait for ICE
gathering, POST it as application/sdp, apply the 201 answer, stream, DELETE the session. Exits non-zero if any
step fails. Usage: gst_whip_publish.py ENDPOINT SECONDS
"""
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=w bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=1000 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w."
)


def main():
    endpoint, seconds = sys.argv[1], float(sys.argv[2])
    Gst.init(None)
    loop = GLib.MainLoop()
    pipe = Gst.parse_launch(PIPELINE)
    webrtc = pipe.get_by_name("w")
    state = {"location": None, "failed": None, "posted": False}

    def fail(message):
        state["failed"] = message
        loop.quit()

    def post_offer():
        if state["posted"]:
            return
        description = webrtc.get_property("local-description")
        if description is None:
            return
        state["posted"] = True
        sdp = description.sdp.as_text()
        if "GST_WHIP_DEBUG" in __import__("os").environ: print(sdp, file=sys.stderr)
        if "a=candidate" not in sdp:
            return fail("libnice gathered no ICE candidates (it ignores loopback): run in the network namespace "
                        "router/tests/browser.rs makes, with its veth pair")
        request = urllib.request.Request(endpoint, data=sdp.encode(), method="POST",
                                         headers={"Content-Type": "application/sdp"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                if resp.status != 201:
                    return fail(f"WHIP answered {resp.status}")
                state["location"] = urllib.parse.urljoin(endpoint, resp.headers["Location"])
                answer_text = resp.read().decode()
        except urllib.error.HTTPError as e:
            return fail(f"WHIP answered {e.code}: {e.read().decode()}")
        _, answer_sdp = GstSdp.SDPMessage.new_from_text(answer_text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, answer_sdp)
        webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        print(f"published to {state['location']}", flush=True)
        GLib.timeout_add(int(seconds * 1000), loop.quit)

    def on_gathering(element, _pspec):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(post_offer)

    def on_offer(promise, element, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            return fail(f"webrtcbin made no offer: {reply}")
        element.emit("set-local-description", offer, Gst.Promise.new())

    def on_negotiation_needed(element):
        element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, element, None))

    def on_message(_bus, message):
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            fail(f"pipeline error: {err} {debug}")

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipe.set_state(Gst.State.PLAYING)
    # Some libnice versions never report gathering complete on a loopback-only host: post after 2 s regardless.
    GLib.timeout_add(2000, lambda: (post_offer(), False)[1])
    GLib.timeout_add(int((seconds + 20) * 1000), lambda: fail("timed out"))
    loop.run()
    pipe.set_state(Gst.State.NULL)
    if state["location"]:
        try:
            urllib.request.urlopen(urllib.request.Request(state["location"], method="DELETE"), timeout=5)
        except urllib.error.URLError:
            pass
    if state["failed"]:
        print(state["failed"], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
