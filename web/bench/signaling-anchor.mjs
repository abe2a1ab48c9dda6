// The anchor for router/benches/signaling_load.rs: what these apps run today, Node's socket.io server (rooms of a
// call: join-room / peers / peer-joined / signal / peer-left, as builtin:signal-rooms speaks it) and a plain `ws`
// server for the live page's chat (register / chat / viewer_count, as builtin:signal-live). Same protocols, same
// limits off, so the load generator cannot tell the two servers apart.
//   node signaling-anchor.mjs   (prints "listening PORT" once up)
import http from 'node:http';
import { Server } from 'socket.io';
import { WebSocketServer } from 'ws';

const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const io = new Server(server, { path: '/socket.io/', maxHttpBufferSize: 128 * 1024 });
const names = new Map();
io.on('connection', (socket) => {
  let room = null;
  socket.on('join-room', ({ roomId, displayName } = {}, ack) => {
    room = `room:${roomId}`;
    const members = io.sockets.adapter.rooms.get(room) ?? new Set();
    const peers = [...members];
    names.set(socket.id, displayName ?? socket.id);
    socket.to(room).emit('peer-joined', { peerId: socket.id, displayName: names.get(socket.id) });
    socket.join(room);
    socket.emit('peers', { peers, displayNames: Object.fromEntries(peers.map((p) => [p, names.get(p)])) });
    if (typeof ack === 'function') ack({ ok: true, roomId, peerId: socket.id });
  });
  socket.on('signal', ({ to, data } = {}) => {
    if (room && io.sockets.adapter.rooms.get(room)?.has(to)) io.to(to).emit('signal', { from: socket.id, data });
  });
  socket.on('disconnect', () => {
    names.delete(socket.id);
    if (room) socket.to(room).emit('peer-left', { peerId: socket.id });
  });
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 128 * 1024 });
server.on('upgrade', (req, socket, head) => {
  if (req.url.startsWith('/ws/live')) wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
});
const members = new Map();
const broadcast = (m) => { const text = JSON.stringify(m); for (const ws of members.keys()) ws.send(text); };
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    let m;
    try { m = JSON.parse(data.toString()); } catch { return; }
    if (m.type === 'register') {
      members.set(ws, m.name ?? 'viewer');
      ws.send(JSON.stringify({ type: 'registered', role: m.role }));
      broadcast({ type: 'viewer_count', count: members.size });
    } else if (m.type === 'chat' && members.has(ws)) {
      broadcast({ type: 'chat', name: members.get(ws), text: String(m.text).slice(0, 500), timestamp: Date.now() });
    }
  });
  ws.on('close', () => { members.delete(ws); broadcast({ type: 'viewer_count', count: members.size }); });
});

server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
