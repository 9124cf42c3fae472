"""A slow, plainly written Othello engine: the ground truth for the vectorised one."""

DIRS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
EMPTY, BLACK, WHITE = 0, 1, -1


class RefGame:
    def __init__(self):
        self.board = [[EMPTY] * 8 for _ in range(8)]
        self.board[3][3] = WHITE  # 27
        self.board[4][4] = WHITE  # 36
        self.board[3][4] = BLACK  # 28
        self.board[4][3] = BLACK  # 35
        self.player = BLACK
        self.over = False
        self._settle()

    def flips_for(self, r, c, player):
        if self.board[r][c] != EMPTY:
            return []
        out = []
        for dr, dc in DIRS:
            run = []
            rr, cc = r + dr, c + dc
            while 0 <= rr < 8 and 0 <= cc < 8 and self.board[rr][cc] == -player:
                run.append((rr, cc))
                rr, cc = rr + dr, cc + dc
            if run and 0 <= rr < 8 and 0 <= cc < 8 and self.board[rr][cc] == player:
                out += run
        return out

    def _legal_for(self, player):
        return sorted(r * 8 + c for r in range(8) for c in range(8) if self.flips_for(r, c, player))

    def legal(self):
        """Legal moves of the side to move (empty once the game is over)."""
        return self._legal

    def _settle(self):
        """Apply passes: if the side to move cannot move, the other side moves; if neither, over."""
        self._legal = self._legal_for(self.player)
        if self._legal:
            return
        self.player = -self.player
        self._legal = self._legal_for(self.player)
        if not self._legal:
            self.over = True

    def play(self, square):
        r, c = divmod(square, 8)
        f = self.flips_for(r, c, self.player)
        if self.over or not f:
            raise ValueError("illegal")
        self.board[r][c] = self.player
        for rr, cc in f:
            self.board[rr][cc] = self.player
        self.player = -self.player
        self._settle()
        return [rr * 8 + cc for rr, cc in f]

    def cells(self):
        return [self.board[i // 8][i % 8] for i in range(64)]
