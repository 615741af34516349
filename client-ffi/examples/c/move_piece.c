/*
 * move_piece: a player of the devnet's demo game moves its piece once a frame (60 frames a
 * second) without waiting for acks. It follows its piece's cell and its nonce tick by tick
 * (tickrate_follow) and applies one tick diff per frame, printing the pending board every
 * frame. At the end it checks every move's ack key (the tick and sequence number of the
 * sequencer's signed preconfirmation), waits for the last move to execute, and prints the
 * board and nonce read back from pending state.
 *
 *   move_piece SEQUENCER[,SEQUENCER...] [FRAMES] [CHAIN_ID] [SEED]
 *
 * Build (after `cargo build --workspace`, which writes target/debug/libclient_ffi.a):
 *
 *   cc -std=c11 -Iclient-ffi/include client-ffi/examples/c/move_piece.c \
 *      "$CARGO_TARGET_DIR/debug/libclient_ffi.a" -lpthread -ldl -lm -lrt -o move_piece
 *
 * client-ffi/tests/c_example.rs does exactly this against a devnet it starts.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tickrate.h"

/* How long the end-of-run checks may wait: a bound on a broken network, not a target. */
#define ACK_WAIT_MS 20000
#define EXECUTED_WAIT_MS 60000
#define NO_CELL UINT64_MAX
#define FRAME_NS 16666667L
/* Room for one tick diff of the two followed items. */
#define DIFF_ROOM 2

static int report(const char *what, TickrateStatus status) {
    char message[512];
    tickrate_last_error(message, sizeof message);
    fprintf(stderr, "%s: status %d: %s\n", what, (int)status, message);
    return 1;
}

#define CHECK(call)                                                                            \
    do {                                                                                       \
        TickrateStatus status_ = (call);                                                       \
        if (status_ != TICKRATE_STATUS_OK) return report(#call, status_);                      \
    } while (0)

/* A cell number from a 256-bit big-endian word (the game stores cells below 64). */
static uint64_t word_to_u64(const TickrateWord *word) {
    uint64_t value = 0;
    for (int i = 24; i < 32; i++) value = (value << 8) | word->bytes[i];
    return value;
}

/* Prints the 8x8 board, `P` where the piece stands, rows separated by spaces, then what the
 * board was built from if `source` is not null. */
static void print_board(const char *label, uint64_t cell, const char *source) {
    char board[TICKRATE_BOARD_CELLS + TICKRATE_BOARD_CELLS / 8];
    size_t at = 0;
    for (uint64_t index = 0; index < TICKRATE_BOARD_CELLS; index++) {
        if (index > 0 && index % 8 == 0) board[at++] = ' ';
        board[at++] = index == cell ? 'P' : '.';
    }
    board[at] = '\0';
    if (cell == NO_CELL) {
        printf("%s | %s | pending cell none", label, board);
    } else {
        printf("%s | %s | pending cell %" PRIu64, label, board, cell);
    }
    if (source != NULL) printf(" | %s", source);
    printf("\n");
    fflush(stdout);
}

static void sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Sleeps until `frame` frames after `start` on the monotonic clock. */
static void sleep_until_frame(const struct timespec *start, uint64_t frame) {
    long long at = (long long)start->tv_sec * 1000000000LL + start->tv_nsec +
                   (long long)frame * FRAME_NS;
    struct timespec deadline = {(time_t)(at / 1000000000LL), (long)(at % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR) {
    }
}

static int same_item(const TickrateItemValue *value, const TickrateStateItem *item) {
    return value->kind == item->kind &&
           memcmp(value->address.bytes, item->address.bytes, sizeof item->address.bytes) == 0 &&
           (item->kind != TICKRATE_ITEM_KIND_STORAGE ||
            memcmp(value->slot.bytes, item->slot.bytes, sizeof item->slot.bytes) == 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SEQUENCER[,SEQUENCER...] [FRAMES] [CHAIN_ID] [SEED]\n", argv[0]);
        return 2;
    }
    uint64_t frames = argc > 2 ? strtoull(argv[2], NULL, 10) : 60;
    uint64_t chain_id = argc > 3 ? strtoull(argv[3], NULL, 10) : 4242;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 7;
    if (frames == 0) frames = 1;

    TickrateClient *client = NULL;
    TickrateAccount *account = NULL;
    CHECK(tickrate_client_connect(argv[1], chain_id, &client));
    CHECK(tickrate_account_from_seed(seed, &account));

    TickrateAddress player, game;
    TickrateWord slot;
    CHECK(tickrate_account_address(account, &player));
    CHECK(tickrate_game_address(&game));
    CHECK(tickrate_game_slot_of(&player, &slot));

    /* The piece's cell and the player's nonce, followed tick by tick: one diff per sequencer
     * tick in which either changed, with their values at the tick's end. */
    TickrateStateItem followed[DIFF_ROOM] = {
        {TICKRATE_ITEM_KIND_STORAGE, game, slot},
        {TICKRATE_ITEM_KIND_NONCE, player, {{0}}},
    };
    CHECK(tickrate_follow(client, followed, DIFF_ROOM));

    TickrateMove *moves = calloc(frames, sizeof *moves);
    if (moves == NULL) return 1;
    uint64_t pending_cell = NO_CELL;
    uint64_t pending_nonce = 0;
    uint64_t diffs_applied = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (uint64_t frame = 0; frame < frames; frame++) {
        uint64_t target = (frame * 7 + 3) % TICKRATE_BOARD_CELLS;
        CHECK(tickrate_send_game_move(client, account, target, &moves[frame]));

        /* One tick diff a frame: the game's state advances a tick at a time. */
        uint64_t tick = 0;
        TickrateItemValue changes[DIFF_ROOM];
        size_t count = 0;
        TickrateStatus polled = tickrate_poll_tick_diff(client, &tick, changes, DIFF_ROOM, &count);
        if (polled == TICKRATE_STATUS_OK) {
            diffs_applied++;
            for (size_t index = 0; index < count; index++) {
                if (same_item(&changes[index], &followed[0])) {
                    pending_cell = word_to_u64(&changes[index].value);
                } else if (same_item(&changes[index], &followed[1])) {
                    pending_nonce = word_to_u64(&changes[index].value);
                }
            }
        } else if (polled != TICKRATE_STATUS_NOT_READY) {
            return report("tickrate_poll_tick_diff", polled);
        }

        char label[48];
        snprintf(label, sizeof label, "frame %3" PRIu64 " move to %2" PRIu64, frame, target);
        char source[64];
        if (polled == TICKRATE_STATUS_OK) {
            snprintf(source, sizeof source, "diff of tick %" PRIu64 ", pending nonce %" PRIu64,
                     tick, pending_nonce);
        } else {
            snprintf(source, sizeof source, "no diff this frame");
        }
        print_board(label, pending_cell, source);
        sleep_until_frame(&start, frame + 1);
    }
    printf("tick diffs applied %" PRIu64 " in %" PRIu64 " frames\n", diffs_applied, frames);

    /* Every move's ack, keyed by the tick and sequence number the sequencer signed. */
    uint64_t acked = 0;
    uint64_t rising = 1;
    TickrateAckKey first = {0, 0}, last = {0, 0};
    for (uint64_t index = 0; index < frames; index++) {
        TickrateAckKey key = {0, 0};
        TickrateStatus status = TICKRATE_STATUS_NOT_READY;
        for (long waited = 0; waited < ACK_WAIT_MS; waited += 5) {
            status = tickrate_move_ack_key(client, &moves[index].hash, &key);
            if (status != TICKRATE_STATUS_NOT_READY) break;
            sleep_ms(5);
        }
        if (status != TICKRATE_STATUS_OK) {
            report("tickrate_move_ack_key", status);
            continue;
        }
        if (acked == 0) {
            first = key;
        } else if (key.seq <= last.seq) {
            rising = 0;
        }
        last = key;
        acked++;
    }
    printf("acked %" PRIu64 " of %" PRIu64 " moves\n", acked, frames);
    printf("first ack tick %" PRIu64 " seq %" PRIu64 ", last ack tick %" PRIu64 " seq %" PRIu64
           "\n",
           first.tick, first.seq, last.tick, last.seq);
    printf("ack seqs rise in send order: %s\n", rising ? "yes" : "no");

    TickrateLevel reached = TICKRATE_LEVEL_UNKNOWN;
    TickrateStatus waited = tickrate_move_wait_for(client, &moves[frames - 1].hash,
                                                   TICKRATE_LEVEL_EXECUTED, EXECUTED_WAIT_MS, &reached);
    if (waited != TICKRATE_STATUS_OK) report("tickrate_move_wait_for", waited);
    printf("last move (nonce %" PRIu64 ") reached %s\n", moves[frames - 1].nonce,
           tickrate_level_name((uint32_t)reached));

    TickrateWord value;
    uint64_t nonce = 0;
    CHECK(tickrate_pending_storage(client, &game, &slot, &value));
    CHECK(tickrate_pending_nonce(client, &player, &nonce));
    print_board("final", word_to_u64(&value), NULL);
    printf("pending nonce %" PRIu64 "\n", nonce);

    free(moves);
    tickrate_account_free(account);
    tickrate_client_free(client);
    return acked == frames && rising && waited == TICKRATE_STATUS_OK ? 0 : 1;
}
