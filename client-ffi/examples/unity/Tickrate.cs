// USAGE EXAMPLE, NOT COMPILED OR TESTED: C# P/Invoke declarations for a Unity game over the
// Tickrate C ABI (client-ffi/include/tickrate.h is the reference; keep the two in step).
//
// Build the shared library (`cargo build --release --workspace` writes
// target/release/libclient_ffi.so, client_ffi.dll or libclient_ffi.dylib), copy it to
// Assets/Plugins/, and add this file next to your scripts.
using System;
using System.Runtime.InteropServices;
using System.Text;
using UnityEngine;

namespace Tickrate
{
    public enum Status : int
    {
        Ok = 0, NullArgument = 1, InvalidArgument = 2, Connect = 3, Closed = 4, Refused = 5,
        MoveFailed = 6, Timeout = 7, NotReady = 8, UnknownMove = 9, Sign = 10, Runtime = 11,
        Panic = 12,
    }

    public enum Level : int
    {
        Unknown = 0, Pending = 1, Sequenced = 2, Finalized = 3, Executed = 4, Settled = 5, Failed = 6,
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Address { [MarshalAs(UnmanagedType.ByValArray, SizeConst = 20)] public byte[] Bytes; }

    [StructLayout(LayoutKind.Sequential)]
    public struct Word { [MarshalAs(UnmanagedType.ByValArray, SizeConst = 32)] public byte[] Bytes; }

    [StructLayout(LayoutKind.Sequential)]
    public struct Move
    {
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 32)] public byte[] Hash;
        public ulong Nonce;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct StateItem { public uint Kind; public Address Address; public Word Slot; }

    [StructLayout(LayoutKind.Sequential)]
    public struct StateChange
    {
        public int Kind; public Address Address; public Word Slot; public Word Value;
        [MarshalAs(UnmanagedType.I1)] public bool Refused; public uint WatchLimit;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ItemValue { public uint Kind; public Address Address; public Word Slot; public Word Value; }

    [StructLayout(LayoutKind.Sequential)]
    public struct AckKey { public ulong Tick; public ulong Seq; }

    public static class Native
    {
        const string Lib = "client_ffi";

        [DllImport(Lib)] public static extern Status tickrate_client_connect(string sequencers, ulong chainId, out IntPtr client);
        [DllImport(Lib)] public static extern void tickrate_client_free(IntPtr client);
        [DllImport(Lib)] public static extern Status tickrate_account_from_seed(ulong seed, out IntPtr account);
        [DllImport(Lib)] public static extern Status tickrate_account_address(IntPtr account, out Address address);
        [DllImport(Lib)] public static extern void tickrate_account_free(IntPtr account);
        [DllImport(Lib)] public static extern Status tickrate_game_address(out Address game);
        [DllImport(Lib)] public static extern Status tickrate_game_slot_of(ref Address player, out Word slot);
        [DllImport(Lib)] public static extern Status tickrate_send_game_move(IntPtr client, IntPtr account, ulong cell, out Move sent);
        [DllImport(Lib)] public static extern Status tickrate_move_ack(IntPtr client, byte[] hash, out ulong tick);
        [DllImport(Lib)] public static extern Status tickrate_move_level(IntPtr client, byte[] hash, out Level level);
        [DllImport(Lib)] public static extern Status tickrate_move_ack_key(IntPtr client, byte[] hash, out AckKey key);
        [DllImport(Lib)] public static extern Status tickrate_subscribe(IntPtr client, ref StateItem item);
        [DllImport(Lib)] public static extern Status tickrate_follow(IntPtr client, StateItem[] items, UIntPtr len);
        [DllImport(Lib)] public static extern Status tickrate_poll_tick_diff(IntPtr client, out ulong tick, [Out] ItemValue[] changes, UIntPtr capacity, out UIntPtr count);
        [DllImport(Lib)] public static extern Status tickrate_poll_change(IntPtr client, out StateChange change);
        [DllImport(Lib)] public static extern Status tickrate_pending_storage(IntPtr client, ref Address address, ref Word slot, out Word value);
        [DllImport(Lib)] public static extern UIntPtr tickrate_last_error(StringBuilder buffer, UIntPtr capacity);

        public static string LastError()
        {
            var buffer = new StringBuilder(512);
            tickrate_last_error(buffer, (UIntPtr)buffer.Capacity);
            return buffer.ToString();
        }
    }

    // A MonoBehaviour that moves the player's piece every frame and applies one tick diff of
    // the piece's cell a frame.
    public class PieceMover : MonoBehaviour
    {
        public string Sequencers = "127.0.0.1:7600";
        public ulong ChainId = 4242, Seed = 7;
        IntPtr client, account;
        Word slot;
        ulong frame;
        public ulong PendingCell = ulong.MaxValue, PendingTick;
        public AckKey LastAck;
        Move lastSent;
        readonly ItemValue[] diff = new ItemValue[1];

        void Start()
        {
            if (Native.tickrate_client_connect(Sequencers, ChainId, out client) != Status.Ok)
                throw new Exception(Native.LastError());
            Native.tickrate_account_from_seed(Seed, out account);
            Native.tickrate_account_address(account, out var player);
            Native.tickrate_game_address(out var game);
            Native.tickrate_game_slot_of(ref player, out slot);
            var followed = new[] { new StateItem { Kind = 2 /* STORAGE */, Address = game, Slot = slot } };
            Native.tickrate_follow(client, followed, (UIntPtr)followed.Length);
        }

        void Update()
        {
            var status = Native.tickrate_send_game_move(client, account, (frame++ * 7 + 3) % 64, out var sent);
            if (status != Status.Ok) Debug.LogWarning(Native.LastError());
            // The previous frame's move, keyed by the tick and sequence number it was acked with.
            if (frame > 1 && Native.tickrate_move_ack_key(client, lastSent.Hash, out var key) == Status.Ok)
                LastAck = key;
            if (status == Status.Ok) lastSent = sent;
            // One tick diff a frame.
            if (Native.tickrate_poll_tick_diff(client, out var tick, diff, (UIntPtr)diff.Length, out var count) == Status.Ok)
            {
                PendingTick = tick;
                if ((ulong)count > 0) PendingCell = diff[0].Value.Bytes[31];
            }
        }

        void OnDestroy()
        {
            Native.tickrate_account_free(account);
            Native.tickrate_client_free(client);
        }
    }
}
