// USAGE EXAMPLE, NOT COMPILED OR TESTED: an Unreal actor over the Tickrate C ABI
// (client-ffi/include/tickrate.h). Link the static library from your module's Build.cs:
//
//   PublicIncludePaths.Add(Path.Combine(TickrateRoot, "client-ffi/include"));
//   PublicAdditionalLibraries.Add(Path.Combine(TickrateRoot, "target/release/libclient_ffi.a"));
//   // Linux also needs: pthread, dl, m, rt (what Rust's standard library uses).
//
// The header is C with `extern "C"` guards, so it includes directly into C++.
#include "TickrateMover.h"

#include "tickrate.h"

static FString LastTickrateError()
{
    char Message[512];
    tickrate_last_error(Message, sizeof Message);
    return FString(UTF8_TO_TCHAR(Message));
}

void ATickrateMover::BeginPlay()
{
    Super::BeginPlay();
    if (tickrate_client_connect(TCHAR_TO_UTF8(*Sequencers), ChainId, &Client) != TICKRATE_STATUS_OK)
    {
        UE_LOG(LogTemp, Error, TEXT("tickrate: %s"), *LastTickrateError());
        return;
    }
    tickrate_account_from_seed(Seed, &Account);
    TickrateAddress Player, Game;
    tickrate_account_address(Account, &Player);
    tickrate_game_address(&Game);
    tickrate_game_slot_of(&Player, &Slot);
    TickrateStateItem Item = {TICKRATE_ITEM_KIND_STORAGE, Game, Slot};
    tickrate_subscribe(Client, &Item);
}

void ATickrateMover::Tick(float DeltaSeconds)
{
    Super::Tick(DeltaSeconds);
    if (Client == nullptr) return;
    TickrateMove Sent;
    const uint64 Cell = (Frame++ * 7 + 3) % TICKRATE_BOARD_CELLS;
    if (tickrate_send_game_move(Client, Account, Cell, &Sent) != TICKRATE_STATUS_OK)
    {
        UE_LOG(LogTemp, Warning, TEXT("tickrate: %s"), *LastTickrateError());
    }
    TickrateStateChange Change;
    while (tickrate_poll_change(Client, &Change) == TICKRATE_STATUS_OK)
    {
        if (!Change.refused) PendingCell = Change.value.bytes[31];  // cells are below 64
    }
}

void ATickrateMover::EndPlay(const EEndPlayReason::Type Reason)
{
    tickrate_account_free(Account);
    tickrate_client_free(Client);
    Account = nullptr;
    Client = nullptr;
    Super::EndPlay(Reason);
}
